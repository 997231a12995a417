"""Run the benchmarks and write their sections into docs/BENCHMARKS.md.

`python -m benchmarks` runs all; `python -m benchmarks eif copy` runs some.
Each module in SECTIONS has `run() -> str`, which returns Markdown. A section
sits between markers, so running one benchmark keeps the others' figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
SECTIONS = ["eif", "attestation", "health", "bake", "copy", "rollout"]
HEADER = """# Benchmarks

Measured by `nox -s bench`, which rewrites each section it runs. Goals come
from the project's issues; a figure that misses its goal is reported as is.
"""


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def write_section(name: str, body: str) -> None:
    page = PAGE.read_text() if PAGE.exists() else HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    block = (
        f"<!-- bench:{name} -->\n{body.strip()}\n\n"
        f"_Run {stamp} at commit {commit} on {machine()}._\n<!-- /bench:{name} -->"
    )
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    if pattern.search(page):
        page = pattern.sub(lambda _: block, page)
    else:
        page = page.rstrip() + "\n\n" + block + "\n"
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"one of {', '.join(SECTIONS)}"
    )
    names = parser.parse_args().sections or SECTIONS
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(
            f"unknown section {unknown[0]!r}: use one of {', '.join(SECTIONS)}"
        )
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running benchmark {name}", flush=True)
        write_section(name, module.run())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
