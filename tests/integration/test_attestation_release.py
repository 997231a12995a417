"""`verify --release ID` reads the expected PCRs from AMI tags in the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from infra.aws import Aws
from infra.cli import verify as verify_tasks
from infra.config import Config
from infra.errors import UserError


@pytest.fixture
def release_lookup(aws: Aws, config: Config, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Send the task's AWS calls to this test's clean emulator."""
    monkeypatch.setattr(verify_tasks, "open_config", lambda path: config)
    monkeypatch.setattr(verify_tasks, "connect", lambda config: aws)
    return aws


def test_release_id_pcrs_from_tags(
    release_lookup: Aws, make_release_image: Any
) -> None:
    _, manifest = make_release_image("us-east-1", pcr0="ab" * 48)
    make_release_image("us-east-1", version="0.2.0", pcr0="cd" * 48)

    pcrs = verify_tasks.load_release_pcrs(manifest.release_id, config_path=None)

    assert pcrs[0] == bytes.fromhex("ab" * 48)
    assert pcrs[1] == bytes.fromhex(manifest.pcr1)
    assert pcrs[2] == bytes.fromhex(manifest.pcr2)
    assert sorted(pcrs) == [0, 1, 2]


def test_release_id_unknown(release_lookup: Aws) -> None:
    with pytest.raises(UserError, match="no AMI of release 0.9.9-missing"):
        verify_tasks.load_release_pcrs("0.9.9-missing", config_path=None)
