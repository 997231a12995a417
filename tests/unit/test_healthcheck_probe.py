"""The external probe's pieces: Route 53 status as AWS returns it, host checks."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from infra.config import Config, parse_config
from infra.errors import UserError
from infra.probe import (
    LOCAL_NOTE,
    REMOTE_NOTE,
    EndpointResult,
    RegionHealth,
    check_endpoint,
    health_check_state,
    is_loopback_host,
    probe_endpoint,
)

CHECK_ID = "abcdef01-2345-6789-abcd-ef0123456789"


def route53() -> Any:
    return boto3.client(
        "route53",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def observations(passed: int, total: int) -> dict[str, Any]:
    reports = []
    for index in range(total):
        status = (
            "Success: HTTP Status Code 200, OK"
            if index < passed
            else "Failure: Connection timed out."
        )
        reports.append(
            {
                "Region": "us-east-1",
                "IPAddress": f"192.0.2.{index}",
                "StatusReport": {"Status": status},
            }
        )
    return {"HealthCheckObservations": reports}


@pytest.mark.parametrize(
    ("passed", "status"),
    # Route 53 counts a check healthy above 18% of checkers: 3 of 16 is 18.75%.
    [(16, "healthy"), (3, "healthy"), (2, "unhealthy"), (0, "unhealthy")],
)
def test_health_check_fraction(passed: int, status: str) -> None:
    client = route53()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_health_check_status",
            observations(passed, 16),
            {"HealthCheckId": CHECK_ID},
        )
        state = health_check_state(client, CHECK_ID)
    assert state.status == status
    assert state.detail == f"{passed} of 16 checkers report success"


def test_health_check_no_reports() -> None:
    client = route53()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_health_check_status",
            {"HealthCheckObservations": []},
            {"HealthCheckId": CHECK_ID},
        )
        state = health_check_state(client, CHECK_ID)
    assert state.status == "unknown"


def test_health_check_error_unknown() -> None:
    client = route53()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_health_check_status",
            service_error_code="NoSuchHealthCheck",
            http_status_code=404,
        )
        state = health_check_state(client, CHECK_ID)
    assert state.status == "unknown"
    assert state.detail == "NoSuchHealthCheck"


class UnimplementedRoute53:
    """An emulator without GetHealthCheckStatus: HTTP 500 that botocore cannot parse."""

    def get_health_check_status(self, **_: Any) -> Any:
        raise ResponseParserError("Unable to parse response (500)")


def test_health_check_unimplemented_unknown() -> None:
    state = health_check_state(UnimplementedRoute53(), CHECK_ID)
    assert state.status == "unknown"
    assert state.detail == "status unavailable: ResponseParserError"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("notary-1.elb.us-east-1.amazonaws.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_check_endpoint_rejects_scheme() -> None:
    with pytest.raises(UserError, match="use http:// or https://"):
        check_endpoint("ftp://127.0.0.1/healthcheck")


def test_check_endpoint_rejects_metadata_address() -> None:
    with pytest.raises(UserError, match="only loopback hosts"):
        check_endpoint("http://169.254.169.254/latest/meta-data/")


def test_verdict_missing_without_balancer() -> None:
    assert RegionHealth(region="us-east-1").verdict == "missing"


def test_verdict_unhealthy_with_problem() -> None:
    health = RegionHealth(
        region="us-east-1", load_balancer="notary-us-east-1", problems=["x"]
    )
    assert health.verdict == "unhealthy"


def test_verdict_error_first() -> None:
    health = RegionHealth(region="us-east-1", error="AWS call failed")
    assert health.verdict == "error"


def test_region_dict_has_verdict() -> None:
    health = RegionHealth(
        region="us-east-1",
        load_balancer="notary-us-east-1",
        endpoint=EndpointResult("http://x:7047/healthcheck", "ok", "HTTP 200 Ok", 200),
    )
    data = health.to_dict()
    assert data["verdict"] == "healthy"
    assert data["endpoint"]["http_status"] == 200


def with_target(config_data: dict[str, Any], target: str) -> Config:
    return parse_config({**config_data, "target": target})


NLB_NAME = "notary-us-east-1-0123456789abcdef.elb.us-east-1.amazonaws.com"


def test_endpoint_local_not_probed(config_data: dict[str, Any]) -> None:
    health = RegionHealth(region="us-east-1", load_balancer="n", dns_name=NLB_NAME)
    result = probe_endpoint(
        health, with_target(config_data, "local"), timeout=1, allow_remote=True
    )
    assert result.status == "not-probed"
    assert result.detail == LOCAL_NOTE
    assert result.url == f"http://{NLB_NAME}:7047/healthcheck"


def test_endpoint_remote_needs_opt_in(config_data: dict[str, Any]) -> None:
    health = RegionHealth(region="us-east-1", load_balancer="n", dns_name=NLB_NAME)
    result = probe_endpoint(
        health, with_target(config_data, "aws"), timeout=1, allow_remote=False
    )
    assert result.status == "not-probed"
    assert result.detail == REMOTE_NOTE


def test_endpoint_without_balancer(config_data: dict[str, Any]) -> None:
    result = probe_endpoint(
        RegionHealth(region="us-east-1"),
        with_target(config_data, "aws"),
        timeout=1,
        allow_remote=False,
    )
    assert result.status == "not-probed"
    assert result.url is None
