"""Checks of a baked image: the same suite for a local root and an instance."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

EIF = "/opt/notary/enclave.eif"
MANIFEST = "/etc/notary/release.json"
ENCLAVE_CONFIG = "/etc/notary/enclave.json"
HEALTH_CONFIG = "/etc/notary/healthcheck.json"
ALLOCATOR = "/etc/nitro_enclaves/allocator.yaml"
UNITS = ("notary-enclave", "notary-bridge", "notary-health", "notary-firstboot")
pytestmark = pytest.mark.image
MANIFEST_KEYS = {
    "release_id",
    "version",
    "git_commit",
    "eif_sha256",
    "pcr0",
    "pcr1",
    "pcr2",
    "build_time",
    "sample",
}


def read_json(host: Any, path: str) -> Any:
    __tracebackhide__ = True
    return json.loads(host.file(path).content_string)


@pytest.fixture(scope="module")
def manifest(host: Any) -> dict[str, Any]:
    return read_json(host, MANIFEST)


@pytest.fixture(scope="module")
def enclave_config(host: Any) -> dict[str, Any]:
    return read_json(host, ENCLAVE_CONFIG)


@pytest.fixture(scope="module")
def health_config(host: Any) -> dict[str, Any]:
    return read_json(host, HEALTH_CONFIG)


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        (EIF, 0o644),
        (MANIFEST, 0o644),
        (ENCLAVE_CONFIG, 0o644),
        (HEALTH_CONFIG, 0o644),
        (ALLOCATOR, 0o644),
        ("/etc/notary/bridge.env", 0o644),
        ("/etc/notary/ports.nft", 0o644),
        ("/opt/notary/bin/notary-enclave", 0o755),
        ("/opt/notary/bin/notary-firstboot", 0o755),
        ("/opt/notary/lib/healthcheck/__main__.py", 0o644),
    ],
)
def test_file_mode_owner(host: Any, path: str, mode: int) -> None:
    installed = host.file(path)
    assert installed.is_file
    assert installed.mode == mode
    assert installed.user == "root"
    assert installed.group == "root"


def test_eif_hash_matches_manifest(host: Any, manifest: dict[str, Any]) -> None:
    assert host.file(EIF).sha256sum == manifest["eif_sha256"]


def test_manifest_fields(manifest: dict[str, Any]) -> None:
    assert set(manifest) >= MANIFEST_KEYS
    assert re.fullmatch(r"[0-9a-f]{96}", manifest["pcr0"])
    assert manifest["release_id"].endswith(manifest["pcr0"][:8])


def test_manifest_expected(
    manifest: dict[str, Any], expected_manifest: dict[str, Any] | None
) -> None:
    if expected_manifest is None:
        pytest.skip("no --expected-manifest given")
    assert manifest == expected_manifest


def test_enclave_config_no_debug(enclave_config: dict[str, Any]) -> None:
    assert enclave_config["debug_mode"] is False
    assert enclave_config["eif_path"] == EIF
    assert enclave_config["enclave_cid"] > 3


def test_allocator_matches_enclave(host: Any, enclave_config: dict[str, Any]) -> None:
    allocator = yaml.safe_load(host.file(ALLOCATOR).content_string)
    assert allocator["memory_mib"] == enclave_config["memory_mib"]
    assert allocator["cpu_count"] == enclave_config["cpu_count"]


def test_health_config_loads(host: Any) -> None:
    command = host.run(
        "PYTHONPATH=/opt/notary/lib python3 -c %s",
        "from healthcheck.config import HealthConfig; "
        f"HealthConfig.load('{HEALTH_CONFIG}')",
    )
    assert command.rc == 0, command.stderr


def test_health_modules_import(host: Any) -> None:
    # The image's own python3 (3.11 on Debian bookworm, 3.9 on Amazon Linux
    # 2023) must import every module without packages from outside.
    command = host.run(
        "PYTHONPATH=/opt/notary/lib python3 -c %s",
        "import importlib, pkgutil, healthcheck\n"
        "for module in pkgutil.iter_modules(healthcheck.__path__):\n"
        "    if module.name != '__main__':\n"
        "        importlib.import_module('healthcheck.' + module.name)",
    )
    assert command.rc == 0, command.stderr


def test_health_config_values(
    health_config: dict[str, Any], enclave_config: dict[str, Any]
) -> None:
    assert health_config["manifest_file"] == MANIFEST
    assert health_config["enclave_name"] == enclave_config["enclave_name"]
    assert health_config["notary_host"] == "127.0.0.1"
    assert health_config["key_file"] == "/var/lib/notary/tls/key.pem"


def test_no_private_key_baked(host: Any) -> None:
    assert not host.file("/var/lib/notary/tls/key.pem").exists
    found = host.run("grep -rls 'PRIVATE KEY' /etc/notary /opt/notary /var/lib/notary")
    assert found.stdout.strip() == ""


def test_firstboot_makes_key(host: Any) -> None:
    scratch = "/tmp/notary-firstboot-check"
    try:
        firstboot = host.run("/opt/notary/bin/notary-firstboot %s", scratch)
        assert firstboot.rc == 0, firstboot.stderr
        key = host.file(f"{scratch}/key.pem")
        assert key.mode == 0o600
        assert key.user == "notary-health"
        parsed = host.run("openssl x509 -noout -in %s", f"{scratch}/cert.pem")
        assert parsed.rc == 0, parsed.stderr
    finally:
        host.run("rm -rf %s", scratch)


def test_tls_dir_owner(host: Any) -> None:
    tls = host.file("/var/lib/notary/tls")
    assert tls.is_directory
    assert tls.user == "notary-health"
    assert tls.mode == 0o750


def test_health_user(host: Any) -> None:
    user = host.user("notary-health")
    assert user.exists
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert "ne" in user.groups
    assert user.uid < 1000


@pytest.mark.parametrize("unit", UNITS)
def test_unit_enabled(host: Any, unit: str) -> None:
    assert host.file(f"/etc/systemd/system/{unit}.service").is_file
    assert host.service(unit).is_enabled


def test_units_verify(host: Any) -> None:
    paths = " ".join(f"/etc/systemd/system/{unit}.service" for unit in UNITS)
    verified = host.run(f"systemd-analyze verify --man=no {paths}")
    assert verified.rc == 0, verified.stderr


def test_enclave_unit_no_debug(host: Any) -> None:
    unit = host.file("/etc/systemd/system/notary-enclave.service").content_string
    runner = host.file("/opt/notary/bin/notary-enclave").content_string
    assert "--debug-mode" not in unit + runner
    assert "Restart=on-failure" in unit
    assert "ExecStop=/opt/notary/bin/notary-enclave stop" in unit
    assert "nitro-cli terminate-enclave" in runner


def test_bridge_targets_enclave(host: Any, enclave_config: dict[str, Any]) -> None:
    unit = host.file("/etc/systemd/system/notary-bridge.service").content_string
    env = host.file("/etc/notary/bridge.env").content_string
    assert "TCP-LISTEN:${NOTARY_PORT},fork,reuseaddr" in unit
    assert "VSOCK-CONNECT:${ENCLAVE_CID}:${VSOCK_PORT}" in unit
    assert f"ENCLAVE_CID={enclave_config['enclave_cid']}\n" in env


def test_health_unit_user(host: Any) -> None:
    unit = host.file("/etc/systemd/system/notary-health.service").content_string
    assert "User=notary-health" in unit
    assert "SupplementaryGroups=ne" in unit
    assert "notary-firstboot.service" in unit
    assert "-m healthcheck --config /etc/notary/healthcheck.json" in unit


@pytest.mark.usefixtures("amazon_linux")
def test_nitro_cli_installed(host: Any) -> None:
    assert host.package("aws-nitro-enclaves-cli").is_installed
    assert host.service("nitro-enclaves-allocator").is_enabled


@pytest.mark.lockdown
@pytest.mark.parametrize("unit", ["ssh.service", "sshd.service"])
def test_sshd_masked(host: Any, unit: str) -> None:
    assert host.file(f"/etc/systemd/system/{unit}").linked_to == "/dev/null"


@pytest.mark.lockdown
def test_no_authorized_keys(host: Any) -> None:
    found = host.run("find / -xdev -name authorized_keys -path '*/.ssh/*'")
    assert found.stdout.strip() == ""


@pytest.mark.lockdown
def test_root_locked(host: Any) -> None:
    shadow = host.file("/etc/shadow").content_string
    password = next(
        line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:")
    )
    assert password.startswith(("!", "*"))


@pytest.mark.lockdown
def test_login_users_locked(host: Any) -> None:
    shadow = host.file("/etc/shadow").content_string
    passwords = {line.split(":")[0]: line.split(":")[1] for line in shadow.splitlines()}
    no_login = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/bin/sync")
    for line in host.file("/etc/passwd").content_string.splitlines():
        name, shell = line.split(":")[0], line.split(":")[6]
        if shell not in no_login:
            assert passwords.get(name, "!").startswith(("!", "*")), name


@pytest.mark.lockdown
def test_cloud_init_locked(host: Any) -> None:
    config = yaml.safe_load(
        host.file("/etc/cloud/cloud.cfg.d/99-notary-lockdown.cfg").content_string
    )
    modules = json.dumps([config["cloud_init_modules"], config["cloud_final_modules"]])
    assert config["cloud_config_modules"] == []
    for module in ("bootcmd", "write_files", "users_groups", "ssh", "scripts_user"):
        assert f'"{module}"' not in modules
    assert config["users"] == []


@pytest.mark.lockdown
def test_firewall_ports(host: Any, health_config: dict[str, Any]) -> None:
    ports = host.file("/etc/notary/ports.nft").content_string
    rules = host.file("/etc/nftables.conf").content_string
    assert f"define HEALTH_PORT = {health_config['port']}\n" in ports
    assert f"define NOTARY_PORT = {health_config['notary_port']}\n" in ports
    assert "policy drop;" in rules
    assert "tcp dport { $NOTARY_PORT, $HEALTH_PORT } accept" in rules
    assert host.service("nftables").is_enabled


@pytest.mark.lockdown
def test_firewall_rules_parse(host: Any) -> None:
    check = host.run("nft -c -f /etc/nftables.conf")
    assert check.rc == 0, check.stderr


@pytest.mark.lockdown
def test_upgrades_off(host: Any) -> None:
    apt = host.file("/etc/apt/apt.conf.d/99notary-no-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "0";' in apt
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "dnf-automatic.timer"):
        assert host.file(f"/etc/systemd/system/{timer}").linked_to == "/dev/null"
