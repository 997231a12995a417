"""Benchmarks run by `nox -s bench`; each module writes one section of
docs/BENCHMARKS.md."""

import sys

from infra.config import REPO_ROOT

# The stand-ins the benchmarks run against (nitro-cli, notary, a baked AMI)
# live with the tests.
sys.path.insert(0, str(REPO_ROOT / "tests"))
