"""Route 53 behaviour the emulator lacks, with botocore's Stubber.

The emulator reports every change INSYNC at once, never returns
PriorRequestNotComplete, ignores CallerReference reuse and may lack
GetHealthCheckStatus, so these tests replay AWS's responses instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from botocore.stub import ANY, Stubber

from infra import tags
from infra.aws import Aws
from infra.config import Config, parse_config
from infra.dns import LoadBalancerEndpoint, health, reconcile_dns, zone
from infra.dns.throttle import ROUTE53_LIMIT, RateLimiter, is_rate_limited
from infra.errors import UserError
from infra.plan import Action

ZONE_ID = "Z0123456789ABCDEFGHIJ"
CHECK_ID = "0f4c1b6e-6d1c-4a4e-9a52-5b1d2a6f7c01"
ENDPOINT = LoadBalancerEndpoint(
    dns_name="nlb-1.elb.eu-west-1.amazonaws.com",
    canonical_hosted_zone_id="Z2IFOLAFXWLO4F",
    arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/nlb/1",
)
SUBMITTED = datetime(2026, 12, 1, tzinfo=UTC)


class StubAws:
    """Hands out one stubbed Route 53 client in place of `Aws`."""

    def __init__(self, client: Any) -> None:
        self.route53 = client

    def client(self, service: str, region: str) -> Any:
        assert service == "route53"
        return self.route53


@pytest.fixture(autouse=True)
def no_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ROUTE53_LIMIT, "per_second", 1e9)


@pytest.fixture
def route53() -> Iterator[Any]:
    # Static dummy keys: a stubbed client never signs or sends a request.
    client = boto3.client(
        "route53",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client


@pytest.fixture
def stub(route53: Any) -> Iterator[Stubber]:
    with Stubber(route53) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def aws_config(config_data: dict[str, Any]) -> Config:
    config_data["target"] = "aws"
    return parse_config(config_data)


def change_info(status: str) -> dict[str, Any]:
    return {
        "ChangeInfo": {"Id": "/change/C1", "Status": status, "SubmittedAt": SUBMITTED}
    }


def busy(stub: Stubber) -> None:
    stub.add_client_error(
        "change_resource_record_sets",
        service_error_code="PriorRequestNotComplete",
        http_status_code=400,
    )


CHANGES: list[dict[str, Any]] = [
    {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": "notary.example.com.",
            "Type": "A",
            "SetIdentifier": "eu-west-1-continent-EU",
            "GeoLocation": {"ContinentCode": "EU"},
            "AliasTarget": {
                "HostedZoneId": "Z2IFOLAFXWLO4F",
                "DNSName": "nlb-1.elb.eu-west-1.amazonaws.com",
                "EvaluateTargetHealth": True,
            },
        },
    }
]


def test_submit_retries_busy_zone(route53: Any, stub: Stubber) -> None:
    busy(stub)
    busy(stub)
    stub.add_response("change_resource_record_sets", change_info("PENDING"))
    pauses: list[float] = []
    change_id = zone.submit_changes(
        route53, ZONE_ID, CHANGES, comment="test", sleep=pauses.append
    )
    assert change_id == "C1"
    assert len(pauses) == 2
    assert pauses[1] > pauses[0] * 0.5


def test_submit_gives_up_busy_zone(route53: Any, stub: Stubber) -> None:
    for _ in range(3):
        busy(stub)
    with pytest.raises(ClientError, match="PriorRequestNotComplete"):
        zone.submit_changes(
            route53, ZONE_ID, CHANGES, comment="test", attempts=3, sleep=lambda _: None
        )


def test_submit_other_error_not_retried(route53: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "change_resource_record_sets", service_error_code="InvalidChangeBatch"
    )
    pauses: list[float] = []
    with pytest.raises(ClientError, match="InvalidChangeBatch"):
        zone.submit_changes(route53, ZONE_ID, CHANGES, comment="t", sleep=pauses.append)
    assert pauses == []


def test_wait_pending_then_insync(route53: Any, stub: Stubber) -> None:
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    stub.add_response("get_change", change_info("INSYNC"), {"Id": "C1"})
    pauses: list[float] = []
    zone.wait_insync(
        route53, "C1", poll_seconds=2.0, timeout_seconds=60.0, sleep=pauses.append
    )
    assert pauses == [2.0, 2.0]


def test_wait_timeout_is_user_error(route53: Any, stub: Stubber) -> None:
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    with pytest.raises(UserError, match="C1 to be INSYNC"):
        zone.wait_insync(
            route53, "C1", poll_seconds=1.0, timeout_seconds=0.0, sleep=lambda _: None
        )


def test_reused_reference_takes_next(
    route53: Any, stub: Stubber, config: Config
) -> None:
    desired = health.desired_config(config, ENDPOINT)
    first = health.caller_reference(config, "eu-west-1", desired)
    stub.add_client_error(
        "create_health_check",
        service_error_code="HealthCheckAlreadyExists",
        http_status_code=409,
        expected_params={"CallerReference": first, "HealthCheckConfig": desired},
    )
    stub.add_response(
        "create_health_check",
        {
            "HealthCheck": {
                "Id": CHECK_ID,
                "CallerReference": f"{first}-2",
                "HealthCheckConfig": desired,
                "HealthCheckVersion": 1,
            },
            "Location": f"https://route53.amazonaws.com/healthcheck/{CHECK_ID}",
        },
        {"CallerReference": f"{first}-2", "HealthCheckConfig": desired},
    )
    stub.add_response("change_tags_for_resource", {})
    expected_tags = health.desired_tags(config, "eu-west-1")
    assert (
        health.create(route53, config, "eu-west-1", desired, expected_tags) == CHECK_ID
    )


def test_status_unknown_when_unimplemented() -> None:
    class Unimplemented:
        def get_health_check_status(self, **_: Any) -> Any:
            raise ResponseParserError("HTTP 500 from the emulator")

    assert health.state(Unimplemented(), CHECK_ID) == "unknown"


def observation(status: str) -> dict[str, Any]:
    return {
        "Region": "us-east-1",
        "IPAddress": "192.0.2.1",
        "StatusReport": {"Status": status, "CheckedTime": SUBMITTED},
    }


def test_status_unhealthy(route53: Any, stub: Stubber) -> None:
    reports = [observation("Failure: Connection timed out.")] * 8
    reports.append(observation("Success: HTTP Status Code 200, OK"))
    stub.add_response("get_health_check_status", {"HealthCheckObservations": reports})
    assert health.state(route53, CHECK_ID) == "unhealthy"


def test_status_healthy(route53: Any, stub: Stubber) -> None:
    reports = [observation("Failure: Connection timed out.")] * 6
    reports += [observation("Success: HTTP Status Code 200, OK")] * 2
    stub.add_response("get_health_check_status", {"HealthCheckObservations": reports})
    assert health.state(route53, CHECK_ID) == "healthy"


def zone_list(name: str = "example.com.") -> dict[str, Any]:
    return {
        "HostedZones": [
            {
                "Id": f"/hostedzone/{ZONE_ID}",
                "Name": name,
                "CallerReference": "r",
                "Config": {"PrivateZone": False},
            }
        ],
        "DNSName": "example.com",
        "IsTruncated": False,
        "MaxItems": "100",
    }


def test_missing_zone_on_aws(
    route53: Any, stub: Stubber, config_data: dict[str, Any]
) -> None:
    config = aws_config(config_data)
    stub.add_response("list_hosted_zones_by_name", zone_list("other.org."))
    with pytest.raises(UserError, match="hosted zone example.com not found"):
        reconcile_dns(cast(Aws, StubAws(route53)), config, "eu-west-1", ENDPOINT)


def read_empty(stub: Stubber) -> None:
    stub.add_response("list_hosted_zones_by_name", zone_list())
    stub.add_response(
        "list_resource_record_sets",
        {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "300"},
        {"HostedZoneId": ZONE_ID, "StartRecordName": "notary.example.com"},
    )
    stub.add_response(
        "list_health_checks",
        {"HealthChecks": [], "Marker": "", "IsTruncated": False, "MaxItems": "100"},
    )


def test_dry_run_only_reads(
    route53: Any, stub: Stubber, config_data: dict[str, Any]
) -> None:
    config = aws_config(config_data)
    read_empty(stub)
    plan = reconcile_dns(
        cast(Aws, StubAws(route53)), config, "us-east-1", ENDPOINT, dry_run=True
    )
    assert [entry.action for entry in plan.entries] == [Action.CREATE] * 3


def test_first_run_waits_insync(
    route53: Any, stub: Stubber, config_data: dict[str, Any]
) -> None:
    config = aws_config(config_data)
    read_empty(stub)
    desired = health.desired_config(config, ENDPOINT)
    stub.add_response(
        "create_health_check",
        {
            "HealthCheck": {
                "Id": CHECK_ID,
                "CallerReference": "r",
                "HealthCheckConfig": desired,
                "HealthCheckVersion": 1,
            },
            "Location": f"https://route53.amazonaws.com/healthcheck/{CHECK_ID}",
        },
        {"CallerReference": ANY, "HealthCheckConfig": desired},
    )
    stub.add_response(
        "change_tags_for_resource",
        {},
        {"ResourceType": "healthcheck", "ResourceId": CHECK_ID, "AddTags": ANY},
    )
    record = {
        **CHANGES[0]["ResourceRecordSet"],
        "SetIdentifier": "eu-west-1-continent-EU",
        "HealthCheckId": CHECK_ID,
    }
    stub.add_response(
        "change_resource_record_sets",
        change_info("PENDING"),
        {
            "HostedZoneId": ZONE_ID,
            "ChangeBatch": {
                "Comment": ANY,
                "Changes": [{"Action": "CREATE", "ResourceRecordSet": record}],
            },
        },
    )
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    stub.add_response("get_change", change_info("INSYNC"), {"Id": "C1"})
    plan = reconcile_dns(
        cast(Aws, StubAws(route53)),
        config,
        "eu-west-1",
        ENDPOINT,
        poll_seconds=0.01,
        timeout_seconds=5.0,
    )
    assert [entry.resource for entry in plan.changes] == [
        "route53-health-check",
        "route53-record",
    ]


def test_rate_limiter_spaces_calls() -> None:
    now = [100.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)

    limiter = RateLimiter(per_second=5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert pauses == pytest.approx([0.2, 0.4])


def read_with_check(stub: Stubber, config: Config) -> None:
    stub.add_response("list_hosted_zones_by_name", zone_list())
    stub.add_response(
        "list_resource_record_sets",
        {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "300"},
    )
    stub.add_response(
        "list_health_checks",
        {
            "HealthChecks": [
                {
                    "Id": CHECK_ID,
                    "CallerReference": "r",
                    "HealthCheckConfig": health.desired_config(config, ENDPOINT),
                    "HealthCheckVersion": 1,
                }
            ],
            "Marker": "",
            "IsTruncated": False,
            "MaxItems": "100",
        },
    )
    expected_tags = health.desired_tags(config, "eu-west-1")
    stub.add_response(
        "list_tags_for_resources",
        {
            "ResourceTagSets": [
                {
                    "ResourceType": "healthcheck",
                    "ResourceId": CHECK_ID,
                    "Tags": tags.to_list(expected_tags),
                }
            ]
        },
        {"ResourceType": "healthcheck", "ResourceIds": [CHECK_ID]},
    )


def test_stale_batch_planned_again(
    route53: Any, stub: Stubber, config_data: dict[str, Any]
) -> None:
    config = aws_config(config_data)
    read_with_check(stub, config)
    stub.add_client_error(
        "change_resource_record_sets",
        service_error_code="InvalidChangeBatch",
        service_message="Tried to create resource record set but it already exists",
    )
    read_with_check(stub, config)
    stub.add_response("change_resource_record_sets", change_info("PENDING"))
    plan = reconcile_dns(
        cast(Aws, StubAws(route53)), config, "eu-west-1", ENDPOINT, wait=False
    )
    assert [entry.action for entry in plan.changes] == [Action.CREATE]


@pytest.mark.parametrize(
    ("endpoint", "limited"),
    [
        ("https://route53.amazonaws.com", True),
        ("http://127.0.0.1:5000", False),
        ("http://localhost:5000", False),
        ("http://[::1]:5000", False),
    ],
)
def test_rate_limit_only_for_route53(endpoint: str, limited: bool) -> None:
    client = boto3.client(
        "route53",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    assert is_rate_limited(client) is limited
