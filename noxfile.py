"""Test sessions: `nox` runs lint, unit, integration and image; bench on request."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "unit", "integration", "image"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
PACKAGES = ["infra", "enclave", "healthcheck"]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check formatting and lint with ruff, and types with mypy."""
    session.install("-e", ".[lint]")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("mypy", *PACKAGES, "tasks.py")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Run the unit tests: no servers, no subprocesses beyond the test's own."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Run tests against real processes: the moto server, socat, TLS peers."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session(python=PYTHON)
def image(session: nox.Session) -> None:
    """Bake a local image and check its root filesystem with testinfra."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/image", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Measure the benchmarks and write docs/BENCHMARKS.md (not run by default)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
