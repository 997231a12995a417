"""The rollout tasks against the emulator, with a config file on disk."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Exit
from standins.images import register_release_image, sample_manifest

from infra import emulator, tags
from infra.aws import Aws
from infra.cli import rollout as tasks
from infra.config import REPO_ROOT, Config
from infra.rollout import lock as rollout_lock
from infra.rollout.dns import DnsState, Route53


@pytest.fixture
def config_file(tmp_path: Path, config_data: dict[str, Any]) -> Path:
    config_data["rollout"]["drain_seconds"] = 0
    config_data["rollout"]["healthy_timeout_seconds"] = 10
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(config_data))
    return path


@pytest.fixture
def wired(aws: Aws, monkeypatch: pytest.MonkeyPatch, make_release_image: Any) -> Aws:
    """Point the tasks at the test's emulator and register a release AMI in
    the default region, where a rollout finds the newest release."""
    monkeypatch.setattr(tasks, "connect", lambda config: aws)
    make_release_image("us-east-1")
    return aws


def test_dry_run_task_writes_nothing(
    wired: Aws,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    make_release_image: Any,
) -> None:
    make_release_image("eu-west-1")
    tasks.rollout.body(
        None, region=["eu-west-1"], dry_run=True, config=str(config_file)
    )
    output = capsys.readouterr().err
    assert "eu-west-1: planned" in output
    ec2 = wired.client("ec2", "eu-west-1")
    vpcs = ec2.describe_vpcs(
        Filters=[{"Name": f"tag:{tags.PROJECT}", "Values": ["notary"]}]
    )["Vpcs"]
    assert vpcs == []


def test_rollout_then_status_json(
    wired: Aws, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.rollout.body(None, region=["us-east-1"], config=str(config_file))
    assert "us-east-1: applied" in capsys.readouterr().err
    tasks.status.body(None, json=True, config=str(config_file))
    data = json.loads(capsys.readouterr().out)
    first = data["regions"][0]
    kept = ["name", "release", "ami", "asg", "healthy", "desired", "dns_name"]
    added = ["locations", "health_check", "serving", "lock", "warnings"]
    assert sorted(first) == sorted(kept + added)
    assert first["name"] == "us-east-1"
    assert first["healthy"] == 1
    assert first["lock"] is None
    assert data["regions"][1]["asg"] == ""


def mix_groups(aws: Aws, config_file: Path, make_release_image: Any) -> list[str]:
    """Roll out two releases, then attach the first group again, which is the
    state a rollout killed between creating the new group and detaching the
    old one leaves. Return both release ids, newest first."""
    _, first = make_release_image("us-east-1", pcr0="d" * 96)
    _, second = make_release_image("us-east-1", pcr0="f" * 96)
    for manifest in (first, second):
        tasks.rollout.body(
            None,
            region=["us-east-1"],
            release=manifest.release_id,
            config=str(config_file),
        )
    autoscaling = aws.client("autoscaling", "us-east-1")
    old_group = f"notary-us-east-1-{first.release_id}"
    arn = aws.client("elbv2", "us-east-1").describe_target_groups()["TargetGroups"][0][
        "TargetGroupArn"
    ]
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=old_group, MinSize=1, DesiredCapacity=1
    )
    autoscaling.attach_load_balancer_target_groups(
        AutoScalingGroupName=old_group, TargetGroupARNs=[arn]
    )
    return [second.release_id, first.release_id]


def test_status_json_mixed_groups(
    wired: Aws,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    make_release_image: Any,
) -> None:
    releases = mix_groups(wired, config_file, make_release_image)
    capsys.readouterr()
    tasks.status.body(None, json=True, config=str(config_file))
    first = json.loads(capsys.readouterr().out)["regions"][0]
    assert first["serving"] == releases
    assert first["release"] == " + ".join(releases)
    assert "invoke rollout --region us-east-1" in first["warnings"][0]


def test_status_table_mixed_and_lock(
    wired: Aws,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    make_release_image: Any,
) -> None:
    releases = mix_groups(wired, config_file, make_release_image)
    rollout_lock.acquire(wired, "us-east-1", holder="other@host:1", ttl=600)
    capsys.readouterr()
    tasks.status.body(None, config=str(config_file))
    output = capsys.readouterr().out
    # The release column folds over lines; join its cells back up.
    cells = [line.split("│")[2] for line in output.splitlines() if "│" in line]
    assert "+".join(releases) in "".join("".join(cells).split())
    assert "warning: 2 groups serve in us-east-1" in output
    assert "locked by other@host:1 until" in output


def test_status_json_lock(
    wired: Aws, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout_lock.acquire(wired, "eu-west-1", holder="other@host:1", ttl=600)
    tasks.status.body(None, json=True, config=str(config_file))
    regions = json.loads(capsys.readouterr().out)["regions"]
    locks = {region["name"]: region["lock"] for region in regions}
    assert locks["eu-west-1"]["holder"] == "other@host:1"


def test_rollout_all_and_region(config_file: Path) -> None:
    with pytest.raises(Exit, match="pass --region or --all, not both"):
        tasks.rollout.body(
            None, region=["eu-west-1"], all=True, config=str(config_file)
        )


def test_rerun_task_reports_no_changes(
    wired: Aws, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.rollout.body(None, region=["us-east-1"], config=str(config_file))
    capsys.readouterr()
    tasks.rollout.body(None, region=["us-east-1"], config=str(config_file))
    assert "us-east-1: unchanged: no changes" in capsys.readouterr().err


def test_rollout_needs_region(config_file: Path) -> None:
    with pytest.raises(Exception, match="no region given"):
        tasks.rollout.body(None, region=[], config=str(config_file))


def test_rollback_without_previous(wired: Aws, config_file: Path) -> None:
    tasks.rollout.body(None, region=["us-east-1"], config=str(config_file))
    with pytest.raises(Exception, match="no previous group"):
        tasks.rollback.body(None, region="us-east-1", config=str(config_file))


def test_failed_region_exits_nonzero(wired: Aws, config_file: Path) -> None:
    # No AMI of the release in sa-east-1: that region fails, us-east-1 goes on.
    with pytest.raises(Exit) as raised:
        tasks.rollout.body(
            None,
            region=["us-east-1", "sa-east-1"],
            config=str(config_file),
        )
    assert raised.value.code == 1
    assert "sa-east-1" in str(raised.value.message)
    assert "us-east-1" not in str(raised.value.message)


def test_destroy_task_yes(
    wired: Aws,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    config: Config,
) -> None:
    tasks.rollout.body(None, region=["us-east-1"], config=str(config_file))
    tasks.destroy.body(None, region="us-east-1", yes=True, config=str(config_file))
    assert "us-east-1: deleted" in capsys.readouterr().err
    dns = Route53().status(wired, config, "us-east-1")
    assert dns == DnsState(dns.locations, dns.health_check_id, dns.health_check_state)
    assert dns.locations == []
    elb = wired.client("elbv2", "us-east-1")
    assert elb.describe_load_balancers()["LoadBalancers"] == []


def test_cli_rollout_status_destroy(
    tmp_path: Path, config_file: Path, config: Config
) -> None:
    """Run the tasks as a user does, against an emulator in its own folder."""
    state_dir = tmp_path / "state"
    server = emulator.start(state_dir)
    try:
        aws = Aws(config, endpoint_url=server.endpoint_url)
        manifest = sample_manifest(version=aws.config.version)
        register_release_image(aws, "us-east-1", manifest)

        def invoke(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "invoke", *args, "--config", str(config_file)],
                cwd=REPO_ROOT,
                env={**os.environ, "NOTARY_STATE_DIR": str(state_dir)},
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )

        rolled = invoke("rollout", "--region", "us-east-1")
        assert rolled.returncode == 0, rolled.stderr
        status = invoke("status", "--json")
        assert status.returncode == 0, status.stderr
        regions = json.loads(status.stdout)["regions"]
        assert regions[0]["healthy"] == 1
        table = invoke("status")
        assert "us-east-1" in table.stdout
        again = invoke("rollout", "--region", "us-east-1")
        assert "no changes" in again.stderr
        unanswered = invoke("destroy", "--region", "us-east-1")
        assert unanswered.returncode == 1
        assert "pass --yes" in unanswered.stderr
        assert "Traceback" not in unanswered.stderr
        destroyed = invoke("destroy", "--region", "us-east-1", "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
        assert "us-east-1: deleted" in destroyed.stderr
    finally:
        # Stops the emulator the state file names, which is a second one when
        # the subprocess started its own, then the first by its process id.
        emulator.stop(state_dir)
        stop_process(server.pid)


def stop_process(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
