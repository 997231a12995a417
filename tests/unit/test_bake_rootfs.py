"""Unit tests of the base root: cache keys, apt sources, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import rootfs
from infra.errors import UserError

DEB822 = """Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://mirror.invalid/debian
Suites: bookworm
Components: main
"""


def test_cache_key_stable() -> None:
    assert rootfs.cache_key() == rootfs.cache_key()


def test_cache_key_order_free() -> None:
    forward = rootfs.cache_key(packages=("a", "b"))
    backward = rootfs.cache_key(packages=("b", "a"))
    assert forward == backward


def test_cache_key_packages_change() -> None:
    assert rootfs.cache_key(packages=("a",)) != rootfs.cache_key(packages=("a", "b"))


def test_cache_key_suite_change() -> None:
    assert rootfs.cache_key(suite="bookworm") != rootfs.cache_key(suite="trixie")


def test_sources_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert rootfs.apt_sources(apt_dir=tmp_path) == [
        "deb http://mirror.invalid/debian bookworm main",
        "deb http://mirror.invalid/debian bookworm-updates main",
        "deb http://mirror.invalid/debian-security bookworm-security main",
    ]


def test_sources_legacy(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\n"
        "deb [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main contrib\n"
        "deb http://mirror.invalid/debian bullseye main\n"
    )
    assert rootfs.apt_sources(apt_dir=tmp_path) == [
        "deb http://mirror.invalid/debian bookworm main contrib"
    ]


def test_sources_missing_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://m.invalid/debian trixie main\n")
    with pytest.raises(UserError, match="no apt source for Debian bookworm"):
        rootfs.apt_sources(apt_dir=tmp_path)


def test_base_root_cached(tmp_path: Path) -> None:
    key = rootfs.cache_key()
    cached = tmp_path / f"base-bookworm-{key[:16]}.tar.zst"
    cached.write_bytes(b"cached")
    base = rootfs.base_root(cache_dir=tmp_path, mmdebstrap="no-such-mmdebstrap")
    assert base.cached is True
    assert base.path == cached


def test_base_root_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    fake = tmp_path / "mmdebstrap"
    fake.write_text(
        "#!/bin/sh\n"
        'for arg; do case "$arg" in *.tar.zst) : > "$arg";; esac; done\n'
        "echo 'E: Unable to locate package no-such-package' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="E: Unable to locate package"):
        rootfs.base_root(cache_dir=cache, mmdebstrap=str(fake), sources=["deb x y z"])
    assert list(cache.iterdir()) == []


def test_base_root_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root"):
        rootfs.base_root(cache_dir=tmp_path)


def test_archive_sha256_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("notary\n")
    result = rootfs.archive(root, tmp_path / "out" / "image.tar.zst")
    line = (tmp_path / "out" / "image.tar.zst.sha256").read_text()
    assert line == f"{result.sha256}  image.tar.zst\n"
    assert result.sha256 == rootfs.file_sha256(result.path)


def test_archive_extract_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("notary\n")
    result = rootfs.archive(root, tmp_path / "image.tar.zst")
    copy = rootfs.extract(result.path, tmp_path / "copy")
    assert (copy / "etc" / "hostname").read_text() == "notary\n"
