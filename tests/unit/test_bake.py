"""Unit tests of the bake steps; AWS-only responses come from botocore's Stubber."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from enclave.eif_writer import write_sample_eif
from enclave.manifest import ReleaseManifest
from infra import bake, rootfs, tags
from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError

IMAGE_ID = "ami-0123456789abcdef0"
SNAPSHOT_ID = "snap-0123456789abcdef0"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def manifest() -> ReleaseManifest:
    return ReleaseManifest(
        version="0.1.0",
        git_commit="0123456789abcdef0123456789abcdef01234567",
        eif_sha256="e" * 64,
        pcr0="a" * 96,
        pcr1="b" * 96,
        pcr2="c" * 96,
        build_time="2026-12-01T00:00:00Z",
        sample=True,
    )


@pytest.fixture
def ec2() -> Any:
    return boto3.client(
        "ec2",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def aws_config(config: Config) -> Config:
    return config.model_copy(update={"target": "aws"})


def image(image_tags: dict[str, str], state: str = "available") -> dict[str, Any]:
    return {
        "ImageId": IMAGE_ID,
        "Name": "notary-x",
        "State": state,
        "Tags": tags.to_list(image_tags),
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": SNAPSHOT_ID}}
        ],
    }


def stub_finish(
    stubber: Stubber, config: Config, manifest: ReleaseManifest
) -> dict[str, str]:
    expected_tags = config.resource_tags(**manifest.image_tags())
    expected_tags[tags.BASE_IMAGE] = "ami-base"
    stubber.add_response(
        "describe_images",
        {"Images": [image({tags.BASE_IMAGE: "ami-base", bake.INCOMPLETE_TAG: "x"})]},
        {"ImageIds": [IMAGE_ID]},
    )
    stubber.add_response(
        "create_tags",
        {},
        {"Resources": [IMAGE_ID], "Tags": tags.to_list(expected_tags)},
    )
    stubber.add_response(
        "modify_image_attribute",
        {},
        {"ImageId": IMAGE_ID, "ImdsSupport": {"Value": "v2.0"}},
    )
    return expected_tags


def raise_parser_error(**_: Any) -> None:
    raise ResponseParserError("HTTP 500 from the emulator")


def test_finish_sets_attributes(
    ec2: Any, config: Config, manifest: ReleaseManifest
) -> None:
    with Stubber(ec2) as stubber:
        stub_finish(stubber, config, manifest)
        stubber.add_response(
            "enable_image_deprecation",
            {"Return": True},
            {"ImageId": IMAGE_ID, "DeprecateAt": NOW + timedelta(days=365)},
        )
        stubber.add_response(
            "delete_tags",
            {},
            {"Resources": [IMAGE_ID], "Tags": [{"Key": bake.INCOMPLETE_TAG}]},
        )
        bake.finish_image(ec2, IMAGE_ID, config=config, manifest=manifest, now=NOW)
        stubber.assert_no_pending_responses()


def test_finish_emulator_warns(
    ec2: Any,
    config: Config,
    manifest: ReleaseManifest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ec2.meta.events.register(
        "provide-client-params.ec2.EnableImageDeprecation", raise_parser_error
    )
    with Stubber(ec2) as stubber:
        stub_finish(stubber, config, manifest)
        stubber.add_response(
            "delete_tags",
            {},
            {"Resources": [IMAGE_ID], "Tags": [{"Key": bake.INCOMPLETE_TAG}]},
        )
        with caplog.at_level(logging.WARNING, logger="infra.bake"):
            bake.finish_image(ec2, IMAGE_ID, config=config, manifest=manifest, now=NOW)
        stubber.assert_no_pending_responses()
    assert "EnableImageDeprecation" in caplog.text


def test_finish_aws_parser_error_raises(
    ec2: Any, config: Config, manifest: ReleaseManifest
) -> None:
    ec2.meta.events.register(
        "provide-client-params.ec2.EnableImageDeprecation", raise_parser_error
    )
    with Stubber(ec2) as stubber:
        stub_finish(stubber, aws_config(config), manifest)
        with pytest.raises(ResponseParserError):
            bake.finish_image(
                ec2, IMAGE_ID, config=aws_config(config), manifest=manifest, now=NOW
            )


def test_finish_failure_deregisters(
    ec2: Any, config: Config, manifest: ReleaseManifest
) -> None:
    target = aws_config(config)
    with Stubber(ec2) as stubber:
        stub_finish(stubber, target, manifest)
        stubber.add_client_error(
            "enable_image_deprecation", "UnauthorizedOperation", http_status_code=403
        )
        stubber.add_response(
            "describe_images", {"Images": [image({})]}, {"ImageIds": [IMAGE_ID]}
        )
        stubber.add_response("deregister_image", {}, {"ImageId": IMAGE_ID})
        stubber.add_response("delete_snapshot", {}, {"SnapshotId": SNAPSHOT_ID})
        with pytest.raises(UserError, match="UnauthorizedOperation"):
            bake.finish_or_remove(ec2, IMAGE_ID, config=target, manifest=manifest)
        stubber.assert_no_pending_responses()


def stub_find(stubber: Stubber, images: list[dict[str, Any]]) -> None:
    stubber.add_response(
        "describe_images",
        {"Images": images},
        {"Owners": ["self"], "Filters": [{"Name": "name", "Values": ["notary-x"]}]},
    )


def test_reuse_finished_image(ec2: Any) -> None:
    with Stubber(ec2) as stubber:
        stub_find(stubber, [image({tags.RELEASE: "r1"})])
        found = bake.check_reuse(
            ec2, name="notary-x", release_id="r1", region="us-east-1", force=False
        )
    assert found == IMAGE_ID


def test_reuse_none(ec2: Any) -> None:
    with Stubber(ec2) as stubber:
        stub_find(stubber, [])
        found = bake.check_reuse(
            ec2, name="notary-x", release_id="r1", region="us-east-1", force=False
        )
    assert found is None


def test_reuse_force_rebuilds(ec2: Any) -> None:
    with Stubber(ec2) as stubber:
        stub_find(stubber, [image({tags.RELEASE: "r1"})])
        found = bake.check_reuse(
            ec2, name="notary-x", release_id="r1", region="us-east-1", force=True
        )
    assert found is None


def test_reuse_unfinished_rejected(ec2: Any) -> None:
    unfinished = image({tags.RELEASE: "r1", bake.INCOMPLETE_TAG: "incomplete"})
    with Stubber(ec2) as stubber:
        stub_find(stubber, [unfinished])
        with pytest.raises(UserError, match="unfinished bake: rerun with --force"):
            bake.check_reuse(
                ec2, name="notary-x", release_id="r1", region="us-east-1", force=False
            )


def test_resolve_eif_aws_missing(config: Config, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no EIF for target aws"):
        bake.resolve_eif(aws_config(config), eif=None, work_dir=tmp_path)


def test_resolve_eif_not_found(config: Config, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        bake.resolve_eif(config, eif=tmp_path / "missing.eif", work_dir=tmp_path)


def test_resolve_eif_local_sample(config: Config, tmp_path: Path) -> None:
    path = bake.resolve_eif(config, eif=None, work_dir=tmp_path)
    assert path == tmp_path / "sample.eif"
    assert path.is_file()


def test_sample_eif_rejected_for_aws(config: Config, tmp_path: Path) -> None:
    sample = write_sample_eif(tmp_path / "sample.eif", version="0.1.0")
    with pytest.raises(UserError, match="sample EIF"):
        bake.release_manifest(aws_config(config), sample, commit="0" * 40)


def test_manifest_of_sample(config: Config, tmp_path: Path) -> None:
    sample = write_sample_eif(tmp_path / "sample.eif", version="0.1.0")
    manifest = bake.release_manifest(config, sample, commit="1" * 40)
    assert manifest.sample is True
    assert manifest.eif_sha256 == rootfs.file_sha256(sample)


def test_ami_name(config: Config, manifest: ReleaseManifest) -> None:
    assert bake.ami_name(config, manifest) == f"notary-{manifest.release_id}"


def test_staging_contents(
    config: Config, manifest: ReleaseManifest, tmp_path: Path
) -> None:
    eif = tmp_path / "x.eif"
    eif.write_bytes(b"eif")
    staging = bake.render_staging(config, manifest, eif=eif, staging=tmp_path / "s")
    enclave = json.loads((staging / "etc" / "enclave.json").read_text())
    health = json.loads((staging / "etc" / "healthcheck.json").read_text())
    assert enclave["debug_mode"] is False
    assert enclave["enclave_cid"] == config.enclave.cid
    assert health["port"] == config.enclave.health_port
    assert (staging / "etc" / "allocator.yaml").read_text() == (
        "---\nmemory_mib: 2048\ncpu_count: 2\n"
    )
    assert "define NOTARY_PORT = 7047\n" in (staging / "etc" / "ports.nft").read_text()
    assert (staging / "lib" / "healthcheck" / "__main__.py").is_file()
    assert (staging / "scripts" / "install-files.sh").is_file()
    assert (staging / "files" / "systemd" / "notary-bridge.service").is_file()


def test_staging_manifest(
    config: Config, manifest: ReleaseManifest, tmp_path: Path
) -> None:
    eif = tmp_path / "x.eif"
    eif.write_bytes(b"eif")
    staging = bake.render_staging(config, manifest, eif=eif, staging=tmp_path / "s")
    written = ReleaseManifest.load(staging / "etc" / "release.json")
    assert written == manifest


def test_emulator_env_drops_real_credentials(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_PROFILE", "production")
    env = bake.packer_environment(Aws(config, endpoint_url="http://127.0.0.1:1"))
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert "AWS_PROFILE" not in env


def test_emulator_variables(config: Config) -> None:
    aws = Aws(config, endpoint_url="http://127.0.0.1:1")
    variables = bake.amazon_ebs_variables(
        aws, name="notary-x", staging=None, force=True
    )
    assert variables["communicator"] == "none"
    assert variables["remote_provision"] == "0"
    assert variables["ec2_endpoint"] == "http://127.0.0.1:1"
    assert variables["force_deregister"] == "true"


def test_aws_variables(config: Config) -> None:
    aws = Aws(aws_config(config))
    variables = bake.amazon_ebs_variables(
        aws, name="notary-x", staging=Path("/s"), force=False
    )
    assert "communicator" not in variables
    assert "ec2_endpoint" not in variables
    assert variables["staging_dir"] == "/s"


def test_root_required(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root"):
        bake.require_root_for(config)


def test_root_not_required_for_aws(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    bake.require_root_for(aws_config(config))


def test_task_without_root_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from invoke import Context, Exit

    from infra.cli import bake as bake_task

    def never_connect(config: Config) -> Aws:
        raise AssertionError("connect ran before the root check")

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(bake_task, "connect", never_connect)
    with pytest.raises(Exit) as stopped:
        bake_task.bake(Context(), config=str(Path("deploy.yaml").resolve()))
    message = str(stopped.value.message)
    assert message.startswith("error: the local bake needs root")
    assert "\n" not in message
