"""The `verify` task: options, expected values, output and exit status."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from attestation_factory import NONCE, NOW, RELEASE_PCRS, Pki, make_document, make_pki
from botocore.stub import Stubber
from invoke import Collection, Program

from enclave import attestation
from enclave.manifest import ReleaseManifest
from infra import tags
from infra.aws import Aws
from infra.cli import verify as verify_tasks
from infra.config import REPO_ROOT, Config

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "attestation"
REAL_DOCUMENT = FIXTURE / "aws-nitro-debug-2024-09-06.cose"
AT = NOW.isoformat()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def test_root(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """Pin the test root in place of AWS's for documents made here."""
    monkeypatch.setattr(
        attestation, "load_root_certificate", lambda: pki.root.certificate
    )
    return pki


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Result:
        program = Program(namespace=Collection(*verify_tasks.TASKS), name="test")
        try:
            program.run(["invoke", "verify", *args], exit=True)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def document_file(tmp_path: Path, test_root: Pki) -> Path:
    path = tmp_path / "document.cose"
    path.write_bytes(make_document(test_root))
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def expected_file(tmp_path: Path) -> Path:
    values = {f"pcr{index}": value.hex() for index, value in RELEASE_PCRS.items()}
    return write_json(tmp_path / "expected.json", values)


def manifest(**changes: Any) -> ReleaseManifest:
    values: dict[str, Any] = {
        "version": "0.1.0",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "eif_sha256": "e" * 64,
        "pcr0": RELEASE_PCRS[0].hex(),
        "pcr1": RELEASE_PCRS[1].hex(),
        "pcr2": RELEASE_PCRS[2].hex(),
        "build_time": "2025-01-15T00:00:00Z",
        "sample": False,
        **changes,
    }
    return ReleaseManifest(**values)


def test_valid_document_exits_zero(
    run: Any, document_file: Path, expected_file: Path
) -> None:
    result = run(
        "--document", str(document_file), "--expected", str(expected_file),
        "--at", AT, "--nonce", NONCE.hex(),
    )  # fmt: skip

    assert result.code == 0
    assert "PASS  nonce" in result.out
    assert "verified: all 9 checks passed" in result.out


def test_real_document_fails_policy(run: Any, tmp_path: Path) -> None:
    zeros = {f"pcr{index}": "00" * 48 for index in range(3)}
    expected = write_json(tmp_path / "zeros.json", zeros)
    result = run(
        "--document", str(REAL_DOCUMENT), "--expected", str(expected),
        "--at", "2024-09-06T04:34:00Z",
    )  # fmt: skip

    assert result.code == 1
    assert "PASS  signature" in result.out
    assert "PASS  chain" in result.out
    assert "FAIL  debug-mode" in result.out
    assert "Traceback" not in result.err


def test_json_output(run: Any, document_file: Path, expected_file: Path) -> None:
    result = run(
        "--document", str(document_file), "--expected", str(expected_file),
        "--at", AT, "--nonce", "00" * 20, "--json",
    )  # fmt: skip
    output = json.loads(result.out)

    assert result.code == 1
    assert output["ok"] is False
    assert output["at"] == AT
    assert [check["name"] for check in output["checks"] if not check["passed"]] == [
        "nonce"
    ]


def test_base64_document(
    run: Any, tmp_path: Path, test_root: Pki, expected_file: Path
) -> None:
    path = tmp_path / "document.b64"
    path.write_bytes(base64.b64encode(make_document(test_root)) + b"\n")
    result = run("--document", str(path), "--expected", str(expected_file), "--at", AT)

    assert result.code == 0


def test_naive_time_is_utc(run: Any, document_file: Path, expected_file: Path) -> None:
    naive = NOW.replace(tzinfo=None).isoformat()
    result = run(
        "--document", str(document_file), "--expected", str(expected_file),
        "--at", naive, "--json",
    )  # fmt: skip

    assert json.loads(result.out)["at"] == AT


def test_public_key_and_user_data(
    run: Any, document_file: Path, expected_file: Path
) -> None:
    result = run(
        "--document", str(document_file), "--expected", str(expected_file),
        "--at", AT, "--public-key", b"test public key".hex(),
        "--user-data", b"other".hex(),
    )  # fmt: skip

    assert result.code == 1
    assert "PASS  public-key" in result.out
    assert "FAIL  user-data" in result.out


def test_max_age_option(run: Any, document_file: Path, expected_file: Path) -> None:
    result = run(
        "--document", str(document_file), "--expected", str(expected_file),
        "--at", AT, "--max-age", "5",
    )  # fmt: skip

    assert result.code == 1
    assert "above the maximum age of 5 s" in result.out


def test_release_manifest_file(run: Any, document_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text(manifest().to_json())
    result = run("--document", str(document_file), "--release", str(path), "--at", AT)

    assert result.code == 0
    assert f"PCR0 is {RELEASE_PCRS[0].hex()}" in result.out


def test_release_manifest_with_pcr8(
    run: Any, document_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "release.json"
    path.write_text(manifest(pcr8="08" * 48).to_json())
    result = run("--document", str(document_file), "--release", str(path), "--at", AT)

    assert result.code == 1
    assert "FAIL  pcr8" in result.out


@pytest.fixture
def stubbed_aws(config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """Serve DescribeImages from a Stubber; nothing leaves the process."""
    aws = Aws(config, endpoint_url="http://127.0.0.1:9")
    monkeypatch.setattr(verify_tasks, "open_config", lambda path: config)
    monkeypatch.setattr(verify_tasks, "connect", lambda config: aws)
    with Stubber(aws.client("ec2", "us-east-1")) as stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def image_answer(image_tags: dict[str, str]) -> dict[str, Any]:
    return {
        "Images": [
            {
                "ImageId": "ami-0123456789abcdef0",
                "State": "available",
                "CreationDate": "2025-01-15T00:00:00.000Z",
                "Tags": tags.to_list(image_tags),
            }
        ]
    }


def test_release_id_reads_ami_tags(
    run: Any, document_file: Path, stubbed_aws: Stubber
) -> None:
    release = manifest()
    stubbed_aws.add_response(
        "describe_images",
        image_answer(release.image_tags()),
        {
            "Owners": ["self"],
            "Filters": [
                {"Name": f"tag:{tags.PROJECT}", "Values": ["notary"]},
                {"Name": f"tag:{tags.RELEASE}", "Values": [release.release_id]},
            ],
        },
    )
    result = run(
        "--document", str(document_file), "--release", release.release_id,
        "--at", AT,
    )  # fmt: skip

    assert result.code == 0
    assert "PASS  pcr2" in result.out


def test_release_ami_missing_tag(
    run: Any, document_file: Path, stubbed_aws: Stubber
) -> None:
    release = manifest()
    image_tags = release.image_tags()
    del image_tags[tags.PCR1]
    stubbed_aws.add_response("describe_images", image_answer(image_tags))
    result = run("--document", str(document_file), "--release", release.release_id)

    assert result.code == 1
    assert f"lacks tag {tags.PCR1}" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "r1", "--expected", "e.json"], "not both"),
        ([], "pass --release or --expected"),
        (["--expected", "{tmp}/expected.json", "--nonce", "xyz"], "--nonce 'xyz'"),
        (["--expected", "{tmp}/expected.json", "--at", "yesterday"], "--at"),
        (["--expected", "{tmp}/expected.json", "--max-age", "0"], "--max-age 0"),
        (["--expected", "{tmp}/missing.json"], "cannot read --expected"),
        (["--expected", "{tmp}/partial.json"], "lacks pcr2"),
        (["--expected", "{tmp}/bad.json"], "not valid JSON"),
        (["--expected", "{tmp}/short.json"], "expected 48"),
        (["--release", "{tmp}/missing.json"], "manifest {tmp}/missing.json not"),
        (["--release", "{tmp}/bad-manifest.json"], "not a release manifest"),
    ],
)
def test_bad_options_one_line(
    run: Any,
    document_file: Path,
    expected_file: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    write_json(tmp_path / "partial.json", {"pcr0": "00" * 48, "pcr1": "00" * 48})
    write_json(tmp_path / "short.json", {f"pcr{i}": "00" * 32 for i in range(3)})
    write_json(tmp_path / "bad-manifest.json", {"version": "0.1.0"})
    (tmp_path / "bad.json").write_text("{")
    filled = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = run("--document", str(document_file), *filled)
    lines = result.err.strip().splitlines()

    assert result.code == 1
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert message.replace("{tmp}", str(tmp_path)) in lines[0]


def test_missing_document_one_line(run: Any, expected_file: Path) -> None:
    result = run(
        "--document", "/nonexistent/doc.cose", "--expected", str(expected_file)
    )

    assert result.code == 1
    assert "cannot read document /nonexistent/doc.cose" in result.err


def test_oversized_document_fails_format(
    run: Any, tmp_path: Path, expected_file: Path
) -> None:
    path = tmp_path / "huge.b64"
    path.write_bytes(b"A" * (verify_tasks.MAX_INPUT_BYTES + 100))
    result = run("--document", str(path), "--expected", str(expected_file))

    assert result.code == 1
    assert "FAIL  format" in result.out
