"""Deployment config: the example loads, and each invalid input gets one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import load_config, parse_config
from infra.errors import UserError


def reject(data: dict[str, Any]) -> str:
    with pytest.raises(UserError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_example_config_loads(repo_root: Path) -> None:
    config = load_config(repo_root / "deploy.yaml")

    assert config.region_names == [
        "us-east-1",
        "eu-west-1",
        "ap-northeast-1",
        "sa-east-1",
    ]
    assert config.default_region.name == "us-east-1"
    assert config.target == "local"


def test_example_config_locations(config: Any) -> None:
    locations = {
        region.name: region.geolocation.locations() for region in config.regions
    }

    assert locations["eu-west-1"] == [("continent", "EU")]
    assert locations["sa-east-1"] == [("continent", "SA")]


def test_region_overrides_instance_type(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["instance_type"] = "c6a.xlarge"
    config = parse_config(config_data)

    assert config.instance_type_for("eu-west-1") == "c6a.xlarge"
    assert config.instance_type_for("us-east-1") == "m5.xlarge"


def test_resource_tags_carry_project(config: Any) -> None:
    tags = config.resource_tags(extra="1")

    assert tags["notary:project"] == "notary"
    assert tags["owner"] == "platform"
    assert tags["extra"] == "1"


def test_unknown_region(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["name"] = "eu-westt-1"
    message = reject(config_data)

    assert "regions.1.name" in message
    assert "'eu-westt-1'" in message
    assert "us-east-1" in message


def test_unknown_continent(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["geolocation"] = {"continents": ["EUR"]}
    message = reject(config_data)

    assert "regions.1.geolocation.continents" in message
    assert "'EUR'" in message
    assert "AF, AN, AS" in message


def test_unknown_country(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["geolocation"] = {"countries": ["XX"]}
    message = reject(config_data)

    assert "'XX'" in message
    assert "ISO 3166-1" in message


def test_continent_and_country_together(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["geolocation"] = {
        "continents": ["EU"],
        "countries": ["DE"],
    }
    message = reject(config_data)

    assert "regions.1.geolocation" in message
    assert "not both" in message


def test_subdivision_outside_us(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["geolocation"] = {
        "countries": ["CA"],
        "subdivisions": ["ON"],
    }
    message = reject(config_data)

    assert "regions.1.geolocation" in message


def test_subdivision_with_country_other_than_us(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["geolocation"] = {
        "countries": ["CA"],
        "subdivisions": ["NY"],
    }
    message = reject(config_data)

    assert "United States" in message


def test_us_subdivisions_accepted(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["geolocation"] = {
        "countries": ["US"],
        "subdivisions": ["CA", "NY"],
    }
    config = parse_config(config_data)

    assert config.region("us-east-1").geolocation.locations() == [
        ("subdivision", "US-CA"),
        ("subdivision", "US-NY"),
    ]


def test_location_claimed_twice(config_data: dict[str, Any]) -> None:
    config_data["regions"][2]["geolocation"] = {"continents": ["EU"]}
    message = reject(config_data)

    assert "continent EU" in message
    assert "eu-west-1" in message
    assert "ap-northeast-1" in message


def test_no_default_region(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["default"] = False
    message = reject(config_data)

    assert "regions:" in message
    assert "default: true" in message


def test_two_default_regions(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["default"] = True
    message = reject(config_data)

    assert "2 regions are marked default" in message
    assert "eu-west-1" in message


def test_region_listed_twice(config_data: dict[str, Any]) -> None:
    config_data["regions"][2]["name"] = "eu-west-1"
    message = reject(config_data)

    assert "listed twice" in message


def test_instance_type_without_enclaves(config_data: dict[str, Any]) -> None:
    config_data["instance_type"] = "t3.xlarge"
    message = reject(config_data)

    assert "instance_type" in message
    assert "t3.xlarge does not support Nitro Enclaves" in message


def test_instance_type_unknown(config_data: dict[str, Any]) -> None:
    config_data["regions"][3]["instance_type"] = "m5.huge"
    message = reject(config_data)

    assert "regions.3.instance_type" in message
    assert "'m5.huge'" in message


def test_instance_type_too_few_vcpus(config_data: dict[str, Any]) -> None:
    config_data["enclave"]["cpu_count"] = 4
    message = reject(config_data)

    assert "has 4 vCPUs" in message
    assert "cpu_count 4" in message


def test_graviton_keeps_one_vcpu(config_data: dict[str, Any]) -> None:
    config_data["instance_type"] = "c6g.large"
    config_data["enclave"]["cpu_count"] = 1
    config_data["enclave"]["memory_mib"] = 2048

    assert parse_config(config_data).instance_type == "c6g.large"


def test_odd_cpu_count_on_x86(config_data: dict[str, Any]) -> None:
    config_data["instance_type"] = "m5.2xlarge"
    config_data["enclave"]["cpu_count"] = 3
    message = reject(config_data)

    assert "enclave.cpu_count" in message
    assert "odd" in message


def test_enclave_memory_above_instance(config_data: dict[str, Any]) -> None:
    config_data["instance_type"] = "c6a.xlarge"
    config_data["enclave"]["memory_mib"] = 8000
    message = reject(config_data)

    assert "8192 MiB" in message
    assert "memory_mib 8000" in message


def test_debug_mode_rejected(config_data: dict[str, Any]) -> None:
    config_data["enclave"]["debug_mode"] = True
    message = reject(config_data)

    assert "enclave.debug_mode" in message
    assert "all-zero PCRs" in message


def test_capacity_min_above_max(config_data: dict[str, Any]) -> None:
    config_data["capacity"] = {"min": 3, "max": 2, "desired": 2}
    message = reject(config_data)

    assert "capacity" in message
    assert "min 3 is above max 2" in message


def test_capacity_desired_outside_range(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["capacity"] = {"min": 1, "max": 2, "desired": 5}
    message = reject(config_data)

    assert "regions.0.capacity" in message
    assert "desired 5" in message


@pytest.mark.parametrize("cid", [0, 1, 2, 3])
def test_reserved_enclave_cid(config_data: dict[str, Any], cid: int) -> None:
    config_data["enclave"]["cid"] = cid
    message = reject(config_data)

    assert "enclave.cid" in message
    assert "reserved" in message


def test_unknown_key_at_top(config_data: dict[str, Any]) -> None:
    config_data["regionz"] = []
    message = reject(config_data)

    assert "unknown key 'regionz'" in message


def test_unknown_nested_key(config_data: dict[str, Any]) -> None:
    config_data["enclave"]["cpus"] = 2
    message = reject(config_data)

    assert "enclave.cpus" in message
    assert "check its spelling" in message


def test_missing_domain(config_data: dict[str, Any]) -> None:
    del config_data["domain"]
    message = reject(config_data)

    assert "domain: missing" in message


def test_domain_outside_zone(config_data: dict[str, Any]) -> None:
    config_data["domain"] = "notary.example.org"
    message = reject(config_data)

    assert "not inside hosted_zone" in message


def test_invalid_target(config_data: dict[str, Any]) -> None:
    config_data["target"] = "cloud"
    message = reject(config_data)

    assert "target" in message
    assert "'cloud'" in message


def test_invalid_client_cidr(config_data: dict[str, Any]) -> None:
    config_data["rollout"]["client_cidrs"] = ["10.0.0.0/33"]
    message = reject(config_data)

    assert "'10.0.0.0/33'" in message


def test_region_without_location(config_data: dict[str, Any]) -> None:
    config_data["regions"][1]["geolocation"] = {}
    message = reject(config_data)

    assert "serves no location" in message


def test_invalid_role_arn(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["role_arn"] = "deployer"
    message = reject(config_data)

    assert "invalid role ARN" in message


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("domain: [unclosed\n")
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "malformed YAML at line" in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_config(tmp_path / "absent.yaml")

    assert "not found" in str(caught.value)
    assert "--config" in str(caught.value)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "expected a mapping" in str(caught.value)


def test_relative_eif_path_resolves_beside_config(
    tmp_path: Path, repo_root: Path
) -> None:
    text = (repo_root / "deploy.yaml").read_text()
    text = text.replace("  cpu_count: 2", "  eif: build/notary.eif\n  cpu_count: 2")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "notary.eif").write_bytes(b".eif")
    path = tmp_path / "deploy.yaml"
    path.write_text(text)

    assert load_config(path).enclave.eif == tmp_path / "build" / "notary.eif"


def test_unknown_region_lookup(config: Any) -> None:
    with pytest.raises(UserError) as caught:
        config.region("eu-north-1")

    assert "not in the config" in str(caught.value)


@pytest.mark.parametrize(
    ("tls", "scheme", "check_type"), [(False, "http", "HTTP"), (True, "https", "HTTPS")]
)
def test_notary_tls_drives_every_check(
    config_data: dict[str, Any], tls: bool, scheme: str, check_type: str
) -> None:
    from infra.bake import health_config
    from infra.dns.health import desired_config
    from infra.dns.records import LoadBalancerEndpoint
    from infra.probe import notary_scheme

    config_data["enclave"]["notary_tls"] = tls
    config = parse_config(config_data)
    endpoint = LoadBalancerEndpoint("nlb.example.com", "Z0000000000000", "arn:nlb")

    assert health_config(config).notary_tls is tls
    assert notary_scheme(config) == scheme
    assert desired_config(config, endpoint)["Type"] == check_type


def test_too_many_tags(config_data: dict[str, Any]) -> None:
    config_data["tags"] = {f"key{index}": "value" for index in range(8)}
    message = reject(config_data)

    assert "tags" in message
    assert "at most 7" in message


def test_tag_key_too_long(config_data: dict[str, Any]) -> None:
    config_data["tags"] = {"k" * 129: "value"}
    message = reject(config_data)

    assert "longer than 128" in message


def test_project_too_long_for_region(config_data: dict[str, Any]) -> None:
    config_data["project"] = "a" * 15
    message = reject(config_data)

    assert "project" in message
    assert "ap-northeast-1" in message
    assert "at most 14 characters" in message


def test_deprecation_beyond_ten_years(config_data: dict[str, Any]) -> None:
    config_data["deprecate_after_days"] = 3_000_000
    message = reject(config_data)

    assert "deprecate_after_days" in message


def test_lock_ttl_bounded(config_data: dict[str, Any]) -> None:
    config_data["rollout"]["lock_ttl_seconds"] = 10**20
    message = reject(config_data)

    assert "rollout.lock_ttl_seconds" in message


def test_unquoted_version_hint(config_data: dict[str, Any]) -> None:
    config_data["version"] = 1.0
    message = reject(config_data)

    assert "version" in message
    assert 'quote it, such as "1.0"' in message


def test_duplicate_yaml_key(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text((repo_root / "deploy.yaml").read_text() + "version: 0.2.0\n")
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "'version' is given twice" in str(caught.value)
    assert "line" in str(caught.value)


def test_config_path_is_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_config(tmp_path)

    assert "cannot be read" in str(caught.value)


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_bytes(b"domain: \xff\xfe\n")
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "not UTF-8 text" in str(caught.value)


def test_missing_eif_file(tmp_path: Path, repo_root: Path) -> None:
    text = (repo_root / "deploy.yaml").read_text()
    path = tmp_path / "deploy.yaml"
    path.write_text(text.replace("  cpu_count: 2", "  eif: absent.eif\n  cpu_count: 2"))
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "absent.eif not found" in str(caught.value)


def test_target_aws_needs_eif(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        (repo_root / "deploy.yaml").read_text().replace("target: local", "target: aws")
    )
    with pytest.raises(UserError) as caught:
        load_config(path)

    assert "enclave.eif: missing" in str(caught.value)
