"""The enclave's container inputs in enclave/image/ agree with the config."""

from __future__ import annotations

import re
from typing import Any

import yaml

from enclave.build import IMAGE_DIR, notary_ref
from infra.config import EnclaveBuild

# Every key notary-server v0.1.0-alpha.12 requires in a config file
# (NotaryServerProperties and its nested structs in src/config.rs).
REQUIRED_KEYS = {
    "host",
    "port",
    "html_info",
    "concurrency",
    "notarization",
    "tls",
    "log",
    "auth",
}
NOTARIZATION_KEYS = {
    "max_sent_data",
    "max_recv_data",
    "timeout",
    "signature_algorithm",
    "allow_extensions",
}


def notary_config() -> dict[str, Any]:
    return yaml.safe_load((IMAGE_DIR / "notary-config.yaml").read_text())


def test_config_has_required_keys() -> None:
    config = notary_config()
    assert set(config) >= REQUIRED_KEYS
    assert set(config["notarization"]) >= NOTARIZATION_KEYS


def test_config_port_and_host() -> None:
    config = notary_config()
    assert config["port"] == 7047
    assert config["host"] == "127.0.0.1"


def test_config_key_made_inside() -> None:
    notarization = notary_config()["notarization"]
    assert notarization["private_key_path"] is None


def test_config_tls_choice() -> None:
    tls = notary_config()["tls"]
    assert tls["enabled"] is False


def test_dockerfile_default_ref() -> None:
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    match = re.search(r"^ARG NOTARY_REF=(\S+)$", dockerfile, re.M)
    assert match is not None
    assert match.group(1) == notary_ref(EnclaveBuild())


def test_dockerfile_notary_port() -> None:
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    assert f"NOTARY_PORT={notary_config()['port']}" in dockerfile


def test_entrypoint_forwards_vsock() -> None:
    script = (IMAGE_DIR / "entrypoint.sh").read_text()
    assert '"VSOCK-LISTEN:${VSOCK_PORT},fork,reuseaddr"' in script
    assert '"TCP:127.0.0.1:${NOTARY_PORT}"' in script
    assert "exec notary-server --config /root/.notary/config.yaml" in script
