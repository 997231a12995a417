"""Rollout decisions as data: group switches, rules, templates, order, lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from infra.aws import Aws
from infra.config import Capacity, Config, parse_config
from infra.errors import UserError
from infra.plan import Action
from infra.releases import ReleaseImage
from infra.rollout import RegionResult, Timing, previous_group
from infra.rollout import lock as rollout_lock
from infra.rollout.context import RegionContext
from infra.rollout.fleet import region_order, run_regions
from infra.rollout.groups import Group, plan_switch, record_switch
from infra.rollout.loadbalancer import health_check_settings
from infra.rollout.preflight import check_instance_type
from infra.rollout.security import (
    Rule,
    current_rules,
    instance_rules,
    rule_changes,
    to_permissions,
)
from infra.rollout.template import (
    VersionCleanup,
    apply_version_cleanup,
    contains,
    launch_data,
    plan_version_cleanup,
)

CAPACITY = Capacity(min=1, max=2, desired=1)
START = datetime(2026, 12, 1, tzinfo=UTC)


def group(
    name: str,
    *,
    age: int,
    desired: int = 1,
    attached: bool = True,
    version: str = "1",
) -> Group:
    return Group(
        name=name,
        release=name,
        created=START + timedelta(days=10 - age),
        min_size=1 if desired else 0,
        max_size=2,
        desired=desired,
        attached=attached,
        template_version=version,
    )


def switch_to(groups: list[Group], target: str, **options: Any) -> Any:
    options.setdefault("template_version", "1")
    options.setdefault("keep", 2)
    return plan_switch(
        groups, target=target, release=target, capacity=CAPACITY, **options
    )


def test_switch_first_release() -> None:
    switch = switch_to([], "new")
    assert switch.create
    assert switch.attach
    assert switch.detach == ()
    assert switch.delete == ()


def test_switch_rerun_unchanged() -> None:
    switch = switch_to([group("new", age=0)], "new")
    assert not switch.has_changes


def test_switch_second_release() -> None:
    switch = switch_to([group("old", age=1)], "new")
    assert switch.create
    assert switch.detach == ("old",)
    assert switch.scale_down == ("old",)
    assert switch.delete == ()


def test_switch_deletes_beyond_keep() -> None:
    groups = [
        group("older", age=2, desired=0, attached=False),
        group("old", age=1),
    ]
    switch = switch_to(groups, "new")
    assert switch.delete == ("older",)
    assert switch.scale_down == ("old",)


def test_switch_keep_one_deletes_previous() -> None:
    switch = switch_to([group("old", age=1)], "new", keep=1)
    assert switch.delete == ("old",)


def test_switch_rollback_scales_up() -> None:
    groups = [
        group("old", age=1, desired=0, attached=False),
        group("new", age=0),
    ]
    switch = switch_to(groups, "old", template_version=None)
    assert not switch.create
    assert switch.resize
    assert not switch.update_template
    assert switch.attach
    assert switch.detach == ("new",)
    assert switch.delete == ()
    assert switch.standby


def test_switch_half_done_not_standby() -> None:
    # A run killed after attaching the new group leaves both in service.
    groups = [group("old", age=1), group("new", age=0)]
    switch = switch_to(groups, "new")
    assert not switch.standby
    assert switch.detach == ("old",)


def test_switch_new_template_version() -> None:
    switch = switch_to([group("new", age=0, version="1")], "new", template_version="2")
    assert switch.update_template
    assert not switch.attach


def test_switch_detached_group_scaled_down() -> None:
    # A run killed after the detach leaves the old group with capacity.
    groups = [group("old", age=1, attached=False), group("new", age=0)]
    switch = switch_to(groups, "new")
    assert switch.detach == ()
    assert switch.scale_down == ("old",)


def test_record_switch_entries(config: Config) -> None:
    ctx = RegionContext(None, config, "us-east-1", dry_run=True)  # type: ignore[arg-type]
    record_switch(ctx, switch_to([group("old", age=1)], "new"))
    rows = [(e.resource, e.name, e.action) for e in ctx.plan.entries]
    assert rows == [
        ("asg", "new", Action.CREATE),
        ("asg-attachment", "new", Action.CREATE),
        ("asg-attachment", "old", Action.DELETE),
        ("asg", "old", Action.UPDATE),
    ]


def test_previous_group_is_newest_standby() -> None:
    groups = [
        group("oldest", age=3, desired=0, attached=False),
        group("old", age=2, desired=0, attached=False),
        group("live", age=1),
    ]
    assert previous_group(groups).name == "old"


def test_previous_group_missing() -> None:
    with pytest.raises(UserError, match="no previous group"):
        previous_group([group("live", age=0)])


def test_instance_rules_exclude_ssh() -> None:
    rules = instance_rules(
        client_cidrs=["0.0.0.0/0"],
        vpc_cidr="10.64.0.0/16",
        notary_port=7047,
        health_port=7048,
    )
    assert rules == {
        Rule("tcp", 7047, 7047, "0.0.0.0/0"),
        Rule("tcp", 7048, 7048, "10.64.0.0/16"),
    }


def test_rule_changes_revoke_extra() -> None:
    current = current_rules(
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 7047,
                "ToPort": 7047,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ]
    )
    desired = {Rule("tcp", 7047, 7047, "0.0.0.0/0")}
    add, revoke = rule_changes(current, desired)
    assert add == set()
    assert revoke == {Rule("tcp", 22, 22, "0.0.0.0/0")}


def test_permissions_round_trip() -> None:
    rules = {Rule("tcp", 443, 443, "10.64.0.0/16"), Rule("tcp", 7047, 7047, "::/0")}
    assert current_rules(to_permissions(rules)) == rules


def test_contains_ignores_added_keys() -> None:
    current = {"A": 1, "B": {"C": 2, "D": 3}, "Tags": [{"K": 1}, {"K": 2}]}
    assert contains(current, {"B": {"C": 2}, "Tags": [{"K": 2}]})


def test_contains_scalar_lists_exact() -> None:
    assert not contains({"Ids": ["sg-1", "sg-2"]}, {"Ids": ["sg-1"]})


def test_contains_detects_change() -> None:
    assert not contains({"ImageId": "ami-1"}, {"ImageId": "ami-2"})


def test_launch_data_hardening(config: Config) -> None:
    ctx = RegionContext(None, config, "us-east-1", dry_run=True)  # type: ignore[arg-type]
    image = ReleaseImage("us-east-1", "ami-1", "r1", "available", "", {})
    data = launch_data(
        ctx,
        image=image,
        root_device="/dev/xvda",
        root_size=8,
        profile="p",
        security_group_id="sg-1",
    )
    assert data["EnclaveOptions"] == {"Enabled": True}
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert "KeyName" not in data
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert data["ImageId"] == "ami-1"


def test_health_check_https() -> None:
    settings = health_check_settings(7048)
    assert settings["HealthCheckProtocol"] == "HTTPS"
    assert settings["HealthCheckPort"] == "7048"
    assert settings["HealthCheckPath"] == "/healthcheck"


def test_timing_from_config(config: Config) -> None:
    timing = Timing.from_config(config, drain=0)
    assert timing.healthy_timeout == config.rollout.healthy_timeout_seconds
    assert timing.drain == 0


def test_region_order_default_first(config_data: dict[str, Any]) -> None:
    config_data["regions"][0]["default"] = False
    config_data["regions"][2]["default"] = True
    config = parse_config(config_data)
    order = region_order(config, config.region_names, default_first=True)
    assert order[0] == "ap-northeast-1"
    assert sorted(order) == sorted(config.region_names)


def test_run_regions_failure_continues() -> None:
    def run(region: str) -> RegionResult:
        if region == "b":
            raise UserError("broken")
        return RegionResult(region, "r1", outcome="applied")

    results = run_regions(["a", "b", "c"], run, concurrency=2, canary="a")
    assert [r.outcome for r in results] == ["applied", "failed", "applied"]


def test_run_regions_halt_on_failure() -> None:
    def run(region: str) -> RegionResult:
        raise UserError(f"{region} broken")

    results = run_regions(
        ["a", "b", "c"], run, concurrency=1, halt_on_failure=True, canary="a"
    )
    assert [r.outcome for r in results] == ["failed", "skipped", "skipped"]


@pytest.fixture
def aws_target(config_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Return clients for `target: aws`; each test stubs every call it makes."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stubbed")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stubbed")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config_data["target"] = "aws"
    return Aws(parse_config(config_data))


def test_instance_type_unsupported(aws_target: Aws) -> None:
    ec2 = aws_target.client("ec2", "us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_instance_types",
            {
                "InstanceTypes": [
                    {"InstanceType": "m5.xlarge", "NitroEnclavesSupport": "unsupported"}
                ]
            },
            {"InstanceTypes": ["m5.xlarge"]},
        )
        with pytest.raises(UserError, match="NitroEnclavesSupport 'unsupported'"):
            check_instance_type(aws_target, aws_target.config, "us-east-1")
        stub.assert_no_pending_responses()


def test_instance_type_supported(aws_target: Aws) -> None:
    ec2 = aws_target.client("ec2", "us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_instance_types",
            {
                "InstanceTypes": [
                    {"InstanceType": "m5.xlarge", "NitroEnclavesSupport": "supported"}
                ]
            },
            {"InstanceTypes": ["m5.xlarge"]},
        )
        check_instance_type(aws_target, aws_target.config, "us-east-1")
        stub.assert_no_pending_responses()


def _lock_item(holder: str, acquired: float, expires: float) -> dict[str, Any]:
    return {
        "region": {"S": "us-east-1"},
        "holder": {"S": holder},
        "acquired_at": {"N": str(acquired)},
        "expires_at": {"N": str(expires)},
    }


def _stub_held(stub: Stubber, item: dict[str, Any]) -> None:
    stub.add_response(
        "describe_table",
        {"Table": {"TableStatus": "ACTIVE"}},
        {"TableName": "notary-rollout-lock"},
    )
    stub.add_client_error("put_item", "ConditionalCheckFailedException")
    stub.add_response("get_item", {"Item": item})


@pytest.mark.parametrize(
    ("now", "message"),
    [(1000.0, "locked by other@host:1"), (5000.0, "stale lock on us-east-1")],
)
def test_lock_held_message(aws_target: Aws, now: float, message: str) -> None:
    dynamodb = aws_target.client("dynamodb", "us-east-1")
    with Stubber(dynamodb) as stub:
        _stub_held(stub, _lock_item("other@host:1", 900.0, 2000.0))
        with pytest.raises(rollout_lock.LockHeld, match=message):
            rollout_lock.acquire(
                aws_target, "us-east-1", holder="me", ttl=600, clock=lambda: now
            )


def test_lock_force_writes_unconditionally(aws_target: Aws) -> None:
    dynamodb = aws_target.client("dynamodb", "us-east-1")
    with Stubber(dynamodb) as stub:
        stub.add_response("describe_table", {"Table": {"TableStatus": "ACTIVE"}})
        stub.add_response("get_item", {"Item": _lock_item("gone", 1.0, 2.0)})
        stub.add_response(
            "put_item",
            {},
            {
                "TableName": "notary-rollout-lock",
                "Item": _lock_item("me", 10.0, 70.0)
                | {
                    "acquired_at": {"N": "10.000"},
                    "expires_at": {"N": "70.000"},
                },
            },
        )
        record = rollout_lock.acquire(
            aws_target, "us-east-1", holder="me", ttl=60, force=True, clock=lambda: 10.0
        )
        stub.assert_no_pending_responses()
    assert record.holder == "me"


def test_switch_kept_versions() -> None:
    found = [
        group("b", age=1, version="2"),
        group("a", age=2, desired=0, attached=False, version="1"),
    ]
    switch = switch_to(found, "c", template_version="3")
    assert (switch.target_version, switch.kept_versions) == ("3", ("2",))


def test_switch_rollback_keeps_target_version() -> None:
    found = [
        group("b", age=1, version="2"),
        group("a", age=2, desired=0, attached=False),
    ]
    assert switch_to(found, "a", template_version=None).target_version == "1"


def test_version_cleanup_moves_default() -> None:
    cleanup = plan_version_cleanup(
        "lt-1", ["3", "2", "1"], default="1", keep={"3", "2"}, new_default="3"
    )
    assert (cleanup.delete, cleanup.new_default) == (("1",), "3")


def test_version_cleanup_keeps_default() -> None:
    cleanup = plan_version_cleanup("lt-1", ["2", "1"], default="1", keep=set())
    assert cleanup.delete == ("2",)


def test_version_cleanup_nothing_unused() -> None:
    cleanup = plan_version_cleanup(
        "lt-1", ["2", "1"], default="1", keep={"1", "2"}, new_default="2"
    )
    assert not cleanup.has_changes


def test_version_cleanup_calls(aws_target: Aws, config: Config) -> None:
    ctx = RegionContext(aws_target, config, "us-east-1", dry_run=False)
    ec2 = aws_target.client("ec2", "us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response(
            "modify_launch_template",
            {},
            {"LaunchTemplateId": "lt-1", "DefaultVersion": "3"},
        )
        stub.add_response(
            "delete_launch_template_versions",
            {"SuccessfullyDeletedLaunchTemplateVersions": []},
            {"LaunchTemplateId": "lt-1", "Versions": ["1"]},
        )
        apply_version_cleanup(
            ctx, VersionCleanup(template_id="lt-1", delete=("1",), new_default="3")
        )
        stub.assert_no_pending_responses()
