"""The bake against real Packer, mmdebstrap, chroot and the emulator.

These tests need root (chroot and mmdebstrap) and reuse the cached base root
under build/cache, which the first run builds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from enclave.manifest import ReleaseManifest
from infra import bake, packer, rootfs, tags
from infra.aws import Aws
from infra.config import REPO_ROOT, Config
from infra.errors import UserError

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the bake needs root for chroot and mmdebstrap"
    ),
    pytest.mark.slow,
]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CACHE = REPO_ROOT / "build" / "cache"


@pytest.fixture
def options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bake.BakeOptions:
    monkeypatch.setattr(bake, "git_commit", lambda: COMMIT)
    return bake.BakeOptions(
        build_dir=tmp_path, cache_dir=CACHE, packer_timeout_seconds=600
    )


def own_images(aws: Aws) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2", "us-east-1")
    return list(ec2.describe_images(Owners=["self"])["Images"])


def test_template_validates() -> None:
    packer.run("validate", bake.TEMPLATE, on_progress=lambda _: None)


def test_template_validates_emulator() -> None:
    variables = {
        "communicator": "none",
        "remote_provision": "0",
        "emulator": "true",
        "ec2_endpoint": "http://127.0.0.1:1",
    }
    packer.run(
        "validate", bake.TEMPLATE, variables=variables, on_progress=lambda _: None
    )


def test_bake_local_reuse_force(
    config: Config, aws: Aws, options: bake.BakeOptions
) -> None:
    first = bake.bake(config, aws, options=options)
    image = own_images(aws)[0]
    image_tags = tags.from_list(image["Tags"])
    assert image["ImageId"] == first.image_id
    assert image["Name"] == f"notary-{first.release_id}"
    assert image_tags[tags.RELEASE] == first.release_id
    assert image_tags[tags.BASE_IMAGE].startswith("ami-")
    assert bake.INCOMPLETE_TAG not in image_tags
    assert first.archive is not None
    assert rootfs.file_sha256(first.archive) == first.archive_sha256
    assert not (options.build_dir / "bake" / "notary" / first.release_id).exists()

    again = bake.bake(config, aws, options=options)
    assert again.reused is True
    assert again.image_id == first.image_id

    forced = bake.bake(
        config,
        aws,
        options=bake.BakeOptions(
            force=True, build_dir=options.build_dir, cache_dir=CACHE
        ),
    )
    remaining = [image["ImageId"] for image in own_images(aws)]
    assert remaining == [forced.image_id]
    assert forced.image_id != first.image_id


def test_eif_hash_mismatch_fails(
    config: Config, tmp_path: Path, options: bake.BakeOptions
) -> None:
    eif = bake.resolve_eif(config, eif=None, work_dir=tmp_path)
    manifest = bake.release_manifest(config, eif, commit=COMMIT)
    staging = bake.render_staging(config, manifest, eif=eif, staging=tmp_path / "s")
    release = json.loads((staging / "etc" / "release.json").read_text())
    release["eif_sha256"] = "0" * 64
    (staging / "etc" / "release.json").write_text(json.dumps(release))
    root = rootfs.extract(rootfs.base_root(cache_dir=CACHE).path, tmp_path / "root")
    with pytest.raises(packer.PackerError) as failure:
        bake.provision_local(root=root, staging=staging, timeout=300)
    message = str(failure.value)
    assert "in step install-files" in message
    assert "does not match the release manifest" in message
    assert not (root / "opt" / "notary" / "enclave.eif").exists()


def test_failed_tests_register_nothing(
    config: Config,
    aws: Aws,
    options: bake.BakeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unprovisioned root fails the image suite.
    monkeypatch.setattr(bake, "provision_local", lambda **_: None)
    with pytest.raises(UserError, match="image tests failed"):
        bake.bake(config, aws, options=options)
    assert own_images(aws) == []
    assert not list((options.build_dir / "bake" / "notary").glob("*/root"))


def test_missing_eif(config: Config, aws: Aws, options: bake.BakeOptions) -> None:
    missing = bake.BakeOptions(
        eif=options.build_dir / "missing.eif", build_dir=options.build_dir
    )
    with pytest.raises(UserError, match="missing.eif not found"):
        bake.bake(config, aws, options=missing)
    assert own_images(aws) == []


def test_manifest_round_trip_in_image(config: Config, tmp_path: Path) -> None:
    eif = bake.resolve_eif(config, eif=None, work_dir=tmp_path)
    manifest = bake.release_manifest(config, eif, commit=COMMIT)
    root = bake.build_local_root(
        config, manifest, eif=eif, work_dir=tmp_path / "w", cache_dir=CACHE
    )
    installed = ReleaseManifest.load(root / "etc" / "notary" / "release.json")
    assert installed == manifest
    assert not (root / "tmp" / "notary-staging").exists()
