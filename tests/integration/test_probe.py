"""The external probe against the emulator, and its endpoint check on loopback."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from invoke import Context, Exit
from standins.processes import Running, free_port, start_notary, stop

from infra import emulator, tags
from infra.aws import Aws
from infra.cli import health as health_tasks
from infra.config import REPO_ROOT, Config, parse_config
from infra.errors import UserError
from infra.probe import (
    EMULATOR_NOTE,
    LOCAL_NOTE,
    RegionHealth,
    check_endpoint,
    probe_endpoint,
    probe_regions,
)

REGION = "us-east-1"


def region_tags(config: Config, component: str) -> list[dict[str, str]]:
    return tags.to_list(
        config.resource_tags(**{tags.REGION: REGION, tags.COMPONENT: component})
    )


@pytest.fixture(scope="module")
def module_config() -> Config:
    return parse_config(yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text()))


@pytest.fixture(scope="module")
def module_aws(emulator_server: emulator.Emulator, module_config: Config) -> Aws:
    """Return clients for an emulator emptied once for this module.

    The first EC2 call in a region after a reset takes seconds, so the
    region is made once and the tests only read it. A test that changes it
    restores it.
    """
    request = urllib.request.Request(
        f"{emulator_server.endpoint_url}/moto-api/reset", method="POST"
    )
    urllib.request.urlopen(request, timeout=30).close()
    return Aws(module_config, endpoint_url=emulator_server.endpoint_url)


@pytest.fixture(scope="module")
def deployed(module_aws: Aws, module_config: Config) -> dict[str, str]:
    """Create a minimal region: NLB, target group with one instance, health check."""
    config = module_config
    ec2 = module_aws.client("ec2", REGION)
    elbv2 = module_aws.client("elbv2", REGION)
    route53 = module_aws.client("route53", REGION)
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
        "Vpcs"
    ][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    subnet_ids = [subnet["SubnetId"] for subnet in subnets["Subnets"]][:2]

    balancer = elbv2.create_load_balancer(
        Name=f"{config.project}-{REGION}",
        Type="network",
        Scheme="internet-facing",
        Subnets=subnet_ids,
        Tags=region_tags(config, "nlb"),
    )["LoadBalancers"][0]
    group = elbv2.create_target_group(
        Name=f"{config.project}-{REGION}-tg",
        Protocol="TCP",
        Port=7047,
        VpcId=vpc_id,
        TargetType="instance",
        Tags=region_tags(config, "target-group"),
    )["TargetGroups"][0]

    image_id = ec2.register_image(
        Name="probe-test",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
    )["ImageId"]
    instance_id = ec2.run_instances(
        ImageId=image_id,
        InstanceType="m5.xlarge",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet_ids[0],
    )["Instances"][0]["InstanceId"]
    elbv2.register_targets(
        TargetGroupArn=group["TargetGroupArn"], Targets=[{"Id": instance_id}]
    )

    check_id = route53.create_health_check(
        CallerReference=str(uuid.uuid4()),
        HealthCheckConfig={
            "Type": "HTTP",
            "FullyQualifiedDomainName": balancer["DNSName"],
            "Port": 7047,
            "ResourcePath": "/healthcheck",
            "RequestInterval": 30,
            "FailureThreshold": 3,
        },
    )["HealthCheck"]["Id"]
    route53.change_tags_for_resource(
        ResourceType="healthcheck",
        ResourceId=check_id,
        AddTags=region_tags(config, "health-check"),
    )
    return {
        "dns_name": balancer["DNSName"],
        "instance_id": instance_id,
        "health_check_id": check_id,
        "subnet_id": subnet_ids[0],
    }


@pytest.fixture(scope="module")
def notary() -> Iterator[Running]:
    running = start_notary()
    yield running
    stop(running)


def test_probe_finds_tagged_resources(
    module_aws: Aws, module_config: Config, deployed: dict[str, str]
) -> None:
    [health] = probe_regions(module_aws, module_config, [REGION])
    targets = [target for group in health.target_groups for target in group.targets]
    assert health.load_balancer == f"{module_config.project}-{REGION}"
    assert health.dns_name == deployed["dns_name"]
    assert [target.instance_id for target in targets] == [deployed["instance_id"]]
    assert targets[0].state == "healthy"
    assert [check.id for check in health.health_checks] == [deployed["health_check_id"]]
    assert health.verdict == "healthy"


def test_probe_local_sends_no_traffic(
    module_aws: Aws, module_config: Config, deployed: dict[str, str]
) -> None:
    [health] = probe_regions(module_aws, module_config, [REGION])
    assert health.endpoint.status == "not-probed"
    assert health.endpoint.detail == LOCAL_NOTE
    assert health.endpoint.url == f"http://{deployed['dns_name']}:7047/healthcheck"


def test_probe_region_without_resources(
    module_aws: Aws, module_config: Config, deployed: dict[str, str]
) -> None:
    [health] = probe_regions(module_aws, module_config, ["eu-west-1"])
    assert health.verdict == "missing"
    assert "no target group found" in health.problems
    assert "no Route 53 health check found" in health.problems


def test_probe_ignores_other_project(
    module_aws: Aws, module_config: Config, deployed: dict[str, str]
) -> None:
    elbv2 = module_aws.client("elbv2", "sa-east-1")
    ec2 = module_aws.client("ec2", "sa-east-1")
    subnet_ids = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    elbv2.create_load_balancer(
        Name="other-sa-east-1",
        Type="network",
        Subnets=subnet_ids,
        Tags=tags.to_list(
            {tags.PROJECT: "other", tags.REGION: "sa-east-1", tags.COMPONENT: "nlb"}
        ),
    )
    [health] = probe_regions(module_aws, module_config, ["sa-east-1"])
    assert health.load_balancer is None


def test_unhealthy_target_reported(
    module_aws: Aws, module_config: Config, deployed: dict[str, str]
) -> None:
    ec2 = module_aws.client("ec2", REGION)
    ec2.stop_instances(InstanceIds=[deployed["instance_id"]])
    try:
        [health] = probe_regions(module_aws, module_config, [REGION])
    finally:
        ec2.start_instances(InstanceIds=[deployed["instance_id"]])
    assert health.verdict == "unhealthy"
    assert f"targets not healthy: {deployed['instance_id']}" in health.problems


def test_check_endpoint_loopback(notary: Running) -> None:
    result = check_endpoint(f"http://127.0.0.1:{notary.port}/healthcheck", timeout=5)
    assert result.status == "ok"
    assert result.http_status == 200


def test_check_endpoint_wrong_answer(notary: Running) -> None:
    result = check_endpoint(f"http://localhost:{notary.port}/nothing", timeout=5)
    assert result.status == "failed"
    assert result.http_status == 404


def test_check_endpoint_refused_port() -> None:
    result = check_endpoint(f"http://127.0.0.1:{free_port()}/healthcheck", timeout=5)
    assert result.status == "failed"
    assert "request failed" in result.detail


def test_endpoint_loopback_target_aws(module_config: Config, notary: Running) -> None:
    data = module_config.model_dump(by_alias=True)
    data["target"] = "aws"
    data["enclave"]["notary_port"] = notary.port
    config = parse_config(data)
    health = RegionHealth(region=REGION, load_balancer="n", dns_name="127.0.0.1")
    result = probe_endpoint(health, config, timeout=5, allow_remote=False)
    assert result.status == "ok"
    assert result.url == f"http://127.0.0.1:{notary.port}/healthcheck"


def test_check_endpoint_rejects_remote_host() -> None:
    # Rejected before any lookup or connection.
    with pytest.raises(UserError, match="only loopback hosts"):
        check_endpoint("http://notary-123.elb.us-east-1.amazonaws.com:7047/healthcheck")


@pytest.fixture
def task_aws(monkeypatch: pytest.MonkeyPatch, module_aws: Aws) -> Aws:
    """Make `invoke health` use this module's emulator and start none."""
    monkeypatch.setattr(health_tasks, "connect", lambda config: module_aws)
    monkeypatch.setenv("COLUMNS", "200")
    return module_aws


def run_health_task(**options: Any) -> int:
    """Call the task as invoke does; return its exit status."""
    try:
        health_tasks.health(Context(), **options)
    except Exit as error:
        return int(error.code)
    return 0


def test_health_task_json(
    task_aws: Aws, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_health_task(region=[REGION, "eu-west-1"], json_=True)
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [entry["region"] for entry in data] == [REGION, "eu-west-1"]
    assert [entry["verdict"] for entry in data] == ["healthy", "missing"]


def test_health_task_table(
    task_aws: Aws, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_health_task(region=[REGION])
    output = capsys.readouterr().out
    assert code == 0
    assert deployed["instance_id"] in output
    assert f"{REGION}: note: {LOCAL_NOTE}" in output
    assert f"{REGION}: note: {EMULATOR_NOTE}" in output


def test_health_task_remote_needs_aws(task_aws: Aws) -> None:
    with pytest.raises(Exit, match="--remote needs target: aws"):
        health_tasks.health(Context(), region=[REGION], remote=True)


def test_health_task_rejects_both(task_aws: Aws) -> None:
    with pytest.raises(Exit, match="pass --region or --all, not both"):
        health_tasks.health(Context(), region=[REGION], all_=True)
