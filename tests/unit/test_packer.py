"""Unit tests of the Packer runner: parsing, redaction, failures."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra import packer
from infra.errors import UserError

BUILD_OK = [
    "1700000000,,ui,say,==> local: Running local shell script: /tmp/x",
    "1700000000,,ui,message,    local: notary-step: install-files",
    "1700000001,amazon-ebs,artifact-count,1",
    "1700000001,amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs",
    "1700000001,amazon-ebs,artifact,0,id,us-east-1:ami-111%!(PACKER_COMMA)"
    "eu-west-1:ami-222",
    "1700000001,amazon-ebs,artifact,0,string,AMIs were created:\\nus-east-1: ami-111",
    "1700000001,amazon-ebs,artifact,0,end",
]
BUILD_FAILED = [
    "1700000000,,ui,message,    local: notary-step: install-files",
    "1700000000,,ui,error,==> local: error: EIF sha256 abc does not match def",
    "1700000000,,ui,error,Build 'local' errored: Script exited with non-zero "
    "exit status: 1",
    "1700000000,local,error,Script exited with non-zero exit status: 1",
]


def collect(
    lines: list[str], secrets: tuple[str, ...] = ()
) -> tuple[packer.BuildResult, list[str]]:
    progress: list[str] = []
    collector = packer._Collector(progress.append, secrets)
    for line in lines:
        collector.feed(line + "\n")
    return collector.finish(0), progress


def fake_packer(tmp_path: Path, lines: list[str], status: int) -> str:
    script = tmp_path / "packer"
    body = "".join(f"printf '%s\\n' '{line}'\n" for line in lines)
    script.write_text(f"#!/bin/sh\n{body}exit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_unescape_comma_newline() -> None:
    assert packer.unescape("a%!(PACKER_COMMA)b\\nc") == "a,b\nc"


def test_parse_line_fields() -> None:
    line = packer.parse_line("1700000000,local,ui,say,x%!(PACKER_COMMA)y")
    assert line is not None
    assert line.timestamp == 1700000000
    assert line.target == "local"
    assert line.type == "ui"
    assert line.data == ("say", "x,y")


def test_parse_line_plain_text() -> None:
    assert packer.parse_line("Failed to parse template: x") is None


def test_artifact_image_ids() -> None:
    result, _ = collect(BUILD_OK)
    assert len(result.artifacts) == 1
    assert result.artifacts[0].image_ids == {
        "us-east-1": "ami-111",
        "eu-west-1": "ami-222",
    }


def test_artifact_description_unescaped() -> None:
    result, _ = collect(BUILD_OK)
    assert result.artifacts[0].description == "AMIs were created:\nus-east-1: ami-111"


def test_step_tracked() -> None:
    result, _ = collect(BUILD_OK)
    assert result.step == "install-files"


def test_failure_names_step_and_error() -> None:
    result, _ = collect(BUILD_FAILED)
    message = packer.failure_message("build", result)
    assert message == (
        "packer build failed in step install-files: EIF sha256 abc does not match def"
    )


def test_failure_without_script_error() -> None:
    result, _ = collect(BUILD_FAILED[2:])
    message = packer.failure_message("build", result)
    assert message.endswith("Script exited with non-zero exit status: 1")


def test_progress_redacts_secret() -> None:
    lines = ["1700000000,,ui,say,key is s3cr3t%!(PACKER_COMMA) done"]
    _, progress = collect(lines, secrets=("s3cr3t",))
    assert progress == ["key is <redacted>, done"]


def test_progress_never_raw() -> None:
    _, progress = collect(BUILD_OK)
    assert not any(",ui," in text or ",artifact," in text for text in progress)


def test_find_packer_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKER", "no-such-packer-binary")
    with pytest.raises(UserError, match="packer not found"):
        packer.find_packer()


def test_run_success(tmp_path: Path) -> None:
    executable = fake_packer(tmp_path, BUILD_OK, 0)
    template = tmp_path / "t.json"
    template.write_text("{}")
    result = packer.run(
        "build", template, packer=executable, on_progress=lambda _: None
    )
    assert result.artifacts[0].image_ids["us-east-1"] == "ami-111"


def test_run_failure_raises(tmp_path: Path) -> None:
    executable = fake_packer(tmp_path, BUILD_FAILED, 1)
    template = tmp_path / "t.json"
    template.write_text("{}")
    with pytest.raises(packer.PackerError, match="in step install-files: EIF sha256"):
        packer.run("build", template, packer=executable, on_progress=lambda _: None)


def test_run_exit_status_alone(tmp_path: Path) -> None:
    executable = fake_packer(tmp_path, [], 3)
    template = tmp_path / "t.json"
    template.write_text("{}")
    with pytest.raises(packer.PackerError, match="exit status 3"):
        packer.run("build", template, packer=executable, on_progress=lambda _: None)


def test_run_timeout(tmp_path: Path) -> None:
    script = tmp_path / "packer"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    template = tmp_path / "t.json"
    template.write_text("{}")
    with pytest.raises(packer.PackerError, match="timed out"):
        packer.run(
            "build",
            template,
            packer=str(script),
            timeout=0.5,
            on_progress=lambda _: None,
        )


def test_run_passes_variables(tmp_path: Path) -> None:
    script = tmp_path / "packer"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args.txt\n')
    script.chmod(0o755)
    template = tmp_path / "t.json"
    template.write_text("{}")
    packer.run(
        "validate",
        template,
        packer=str(script),
        only=["local"],
        variables={"b": "2", "a": "x,y"},
        on_progress=lambda _: None,
    )
    arguments = (tmp_path / "args.txt").read_text().split("\n")
    assert arguments[:3] == ["validate", "-machine-readable", "-only=local"]
    assert arguments[3:8] == ["-var", "a=x,y", "-var", "b=2", str(template)]


def test_failure_from_ui_error() -> None:
    result, _ = collect(["1700000000,,ui,error,flag provided but not defined: -x"])
    message = packer.failure_message("validate", result)
    assert message == "packer validate failed: flag provided but not defined: -x"


def test_user_error_subclass() -> None:
    assert issubclass(packer.PackerError, UserError)
