"""The local emulator: a real moto server started, found and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import boto3
import pytest

from infra import emulator
from infra.errors import UserError


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    started = emulator.start(tmp_path)
    yield started
    emulator.stop(tmp_path)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_records_endpoint(server: emulator.Emulator, tmp_path: Path) -> None:
    found = emulator.status(tmp_path)

    assert found == server
    assert found.endpoint_url.startswith("http://127.0.0.1:")


def test_start_twice_reuses_server(server: emulator.Emulator, tmp_path: Path) -> None:
    assert emulator.start(tmp_path) == server


def test_server_seeds_amazon_linux(server: emulator.Emulator) -> None:
    ec2 = boto3.client(
        "ec2",
        region_name="eu-west-1",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["al2023-ami-*"]}]
    )["Images"]

    assert images


def test_server_loads_managed_policies(server: emulator.Emulator) -> None:
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    policy = iam.get_policy(
        PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    )["Policy"]

    assert policy["PolicyName"] == "AmazonSSMManagedInstanceCore"


def test_stop_ends_process(tmp_path: Path) -> None:
    started = emulator.start(tmp_path)

    assert emulator.stop(tmp_path) is True
    assert emulator.status(tmp_path) is None
    assert not pid_exists(started.pid)


def test_stop_without_server(tmp_path: Path) -> None:
    assert emulator.stop(tmp_path) is False


def test_status_ignores_stale_record(tmp_path: Path) -> None:
    (tmp_path / "emulator.json").write_text('{"pid": 999999, "port": 9}')

    assert emulator.status(tmp_path) is None


def test_status_ignores_reused_pid(tmp_path: Path) -> None:
    (tmp_path / "emulator.json").write_text(f'{{"pid": {os.getpid()}, "port": 9}}')

    assert emulator.status(tmp_path) is None


def test_start_keeps_silent_live_server(tmp_path: Path) -> None:
    started = emulator.start(tmp_path)
    try:
        os.kill(started.pid, signal.SIGSTOP)
        with pytest.raises(UserError) as caught:
            emulator.start(tmp_path, wait=1.0)

        assert f"pid {started.pid}" in str(caught.value)
        assert "emulator.stop" in str(caught.value)
    finally:
        os.kill(started.pid, signal.SIGCONT)
        emulator.stop(tmp_path)


def test_stop_leaves_reused_pid_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "emulator.json").write_text(
            f'{{"pid": {bystander.pid}, "port": 9}}'
        )

        assert emulator.stop(tmp_path) is False
        assert bystander.poll() is None
        assert not (tmp_path / "emulator.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("pid", [-1, 0, 1])
def test_stop_ignores_special_pids(tmp_path: Path, pid: int) -> None:
    (tmp_path / "emulator.json").write_text(f'{{"pid": {pid}, "port": 9}}')

    assert emulator.stop(tmp_path) is False
