"""The local image's root filesystem: a cached mmdebstrap base and archives.

The base root is a Debian bookworm tarball made by mmdebstrap (which needs
root) and cached under a name derived from its suite, variant and package
list, so a bake reuses it until that list changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError

log = logging.getLogger(__name__)

SUITE = "bookworm"
VARIANT = "apt"
# Packages the provisioning scripts and units use: systemd for units, python3 for
# the health service and the scripts, socat for the bridge, openssl for the
# first-boot key, nftables for the firewall, passwd for user management.
BASE_PACKAGES = (
    "ca-certificates",
    "nftables",
    "openssl",
    "passwd",
    "python3",
    "socat",
    "systemd",
    "systemd-sysv",
)
APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class BaseRoot:
    path: Path
    key: str
    cached: bool


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str
    size: int


def require_root(action: str) -> None:
    """Raise UserError unless this process runs as root."""
    if os.geteuid() != 0:
        raise UserError(
            f"{action} needs root for chroot and mmdebstrap: run it as root, "
            "such as sudo -E invoke bake"
        )


def cache_key(
    *,
    packages: tuple[str, ...] = BASE_PACKAGES,
    suite: str = SUITE,
    variant: str = VARIANT,
) -> str:
    """Return the sha256 that names a base root built from these inputs."""
    spec = {"packages": sorted(packages), "suite": suite, "variant": variant}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def apt_sources(*, suite: str = SUITE, apt_dir: Path = APT_DIR) -> list[str]:
    """Return one-line apt sources for `suite` from this machine's apt config.

    Reads sources.list and the deb822 files in sources.list.d, and keeps the
    entries for the suite and its -updates and -security suites, so no mirror
    host is named in code.
    """
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    lines: list[str] = []
    for uri, suites, components in _read_sources(apt_dir):
        for entry in suites:
            if entry in wanted:
                line = f"deb {uri} {entry} {' '.join(components) or 'main'}"
                if line not in lines:
                    lines.append(line)
    if not any(f" {suite} " in line for line in lines):
        raise UserError(
            f"no apt source for Debian {suite} in {apt_dir}: add a deb line for "
            f"{suite} to sources.list"
        )
    return lines


def _read_sources(apt_dir: Path) -> list[tuple[str, list[str], list[str]]]:
    entries: list[tuple[str, list[str], list[str]]] = []
    legacy = [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            # Options such as [signed-by=...] do not matter to mmdebstrap here.
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]], words[3:]))
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822_fields(stanza)
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append(
                    (
                        uri,
                        fields.get("suites", "").split(),
                        fields.get("components", "").split(),
                    )
                )
    return entries


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    name = ""
    for line in stanza.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace() and name:
            fields[name] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        fields[name] = value.strip()
    return fields


def base_root(
    *,
    cache_dir: Path,
    packages: tuple[str, ...] = BASE_PACKAGES,
    suite: str = SUITE,
    variant: str = VARIANT,
    sources: list[str] | None = None,
    mmdebstrap: str = "mmdebstrap",
    timeout: float = 900.0,
) -> BaseRoot:
    """Return the cached base root tarball, building it with mmdebstrap if
    needed. A failed build leaves no file in the cache."""
    key = cache_key(packages=packages, suite=suite, variant=variant)
    path = cache_dir / f"base-{suite}-{key[:16]}.tar.zst"
    if path.is_file():
        log.info("Reusing cached base root %s", path)
        return BaseRoot(path=path, key=key, cached=True)

    require_root("building the base root")
    executable = shutil.which(mmdebstrap)
    if executable is None:
        raise UserError(
            f"{mmdebstrap} not found: install it (apt-get install mmdebstrap)"
        )

    cache_dir.mkdir(parents=True, exist_ok=True)
    # A name per process, so concurrent bakes never write the same file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial.tar.zst")
    lines = sources if sources is not None else apt_sources(suite=suite)
    command = [
        executable,
        f"--variant={variant}",
        "--include=" + ",".join(sorted(packages)),
        suite,
        str(partial),
        *lines,
    ]

    log.info(
        "Building base root (%s, %d packages) with mmdebstrap", suite, len(packages)
    )
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"mmdebstrap timed out after {timeout:.0f} s: check the apt mirror"
        ) from None
    if completed.returncode != 0:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"base root build failed (mmdebstrap exit status {completed.returncode}): "
            f"{_last_error(completed.stderr)}"
        )
    partial.replace(path)
    return BaseRoot(path=path, key=key, cached=False)


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("E:"):
            return line
    return lines[-1] if lines else "no output"


def extract(tarball: Path, destination: Path) -> Path:
    """Unpack a root tarball into `destination`, keeping owners and modes."""
    destination.mkdir(parents=True, exist_ok=True)
    _tar(["--zstd", "--numeric-owner", "-xpf", str(tarball), "-C", str(destination)])
    return destination


def archive(root: Path, destination: Path) -> Archive:
    """Write `root` as a zstd-compressed tarball plus a `.sha256` file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    try:
        _tar(
            [
                "--zstd",
                "--numeric-owner",
                "--sort=name",
                "-cf",
                str(partial),
                "-C",
                str(root),
                ".",
            ]
        )
    except UserError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(destination)
    digest = file_sha256(destination)
    destination.with_name(destination.name + ".sha256").write_text(
        f"{digest}  {destination.name}\n"
    )
    return Archive(path=destination, sha256=digest, size=destination.stat().st_size)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tar(arguments: list[str]) -> None:
    completed = subprocess.run(
        ["tar", *arguments], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise UserError(
            f"tar {' '.join(arguments[:3])} failed: {_last_error(completed.stderr)}"
        )
