"""Unit tests of the Packer template's structure."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra import bake

USER_VARIABLE = re.compile(r"\{\{\s*user `([^`]+)`\s*\}\}")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(bake.TEMPLATE.read_text())


def builder(template: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in template["builders"] if entry["name"] == name)


def test_template_sources(template: dict[str, Any]) -> None:
    names = [entry["name"] for entry in template["builders"]]
    assert names == ["local", "amazon-ebs"]


def test_template_variables_defined(template: dict[str, Any]) -> None:
    used = set(USER_VARIABLE.findall(bake.TEMPLATE.read_text()))
    assert used <= set(template["variables"])


def test_template_ssh_by_default(template: dict[str, Any]) -> None:
    assert template["variables"]["communicator"] == "ssh"
    assert template["variables"]["remote_provision"] == "1"
    assert template["variables"]["emulator"] == "false"


def test_template_amazon_linux_source(template: dict[str, Any]) -> None:
    source = builder(template, "amazon-ebs")["source_ami_filter"]
    assert source["filters"]["name"].startswith("al2023-ami-")
    assert source["owners"] == ["amazon"]
    assert source["most_recent"] is True


def test_template_marks_unfinished(template: dict[str, Any]) -> None:
    image_tags = builder(template, "amazon-ebs")["tags"]
    assert image_tags[bake.INCOMPLETE_TAG] == "incomplete"
    assert image_tags["notary:base-image"] == "{{ .SourceAMI }}"


def test_template_steps_in_order(template: dict[str, Any]) -> None:
    for provisioner, source in zip(
        template["provisioners"], ["local", "amazon-ebs"], strict=True
    ):
        steps = [line.split()[-1] for line in provisioner["inline"]]
        if source == "local":
            assert steps == ["nitro", "install-files", "lockdown"]
        else:
            assert steps == [
                "upload",
                "nitro",
                "install-files",
                "testinfra",
                "lockdown",
            ]
        assert provisioner["only"] == [source]


@pytest.mark.parametrize("step", ["nitro", "install-files", "lockdown"])
def test_step_scripts_exist(step: str) -> None:
    assert (bake.TEMPLATE.parent / "scripts" / f"{step}.sh").is_file()
