"""Client factory: targets never mix, retries are adaptive, calls are counted."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from infra.aws import Aws, error_code
from infra.config import Config, parse_config
from infra.errors import UserError


def test_local_needs_endpoint(config: Config) -> None:
    with pytest.raises(UserError) as caught:
        Aws(config)

    assert "emulator.start" in str(caught.value)


def test_aws_rejects_emulator_endpoint(config_data: dict[str, Any]) -> None:
    config_data["target"] = "aws"
    config = parse_config(config_data)
    with pytest.raises(UserError) as caught:
        Aws(config, endpoint_url="http://127.0.0.1:5000")

    assert "target aws" in str(caught.value)


def test_local_client_uses_endpoint(config: Config) -> None:
    aws = Aws(config, endpoint_url="http://127.0.0.1:5000")
    client = aws.client("ec2", "eu-west-1")

    assert client.meta.endpoint_url == "http://127.0.0.1:5000"
    assert client.meta.region_name == "eu-west-1"


def test_client_is_cached(config: Config) -> None:
    aws = Aws(config, endpoint_url="http://127.0.0.1:5000")

    assert aws.client("ec2", "us-east-1") is aws.client("ec2", "us-east-1")


def test_retry_mode_adaptive(config: Config) -> None:
    client = Aws(config, endpoint_url="http://127.0.0.1:5000").client(
        "ec2", "us-east-1"
    )

    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.config.retries["total_max_attempts"] == 8


def test_calls_counted_per_region(config: Config) -> None:
    aws = Aws(config, endpoint_url="http://127.0.0.1:5000")
    client = aws.client("ec2", "sa-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_regions", {"Regions": []})
        stubber.add_response("describe_regions", {"Regions": []})
        client.describe_regions()
        client.describe_regions()

    assert aws.calls["sa-east-1"] == 2
    assert aws.calls["us-east-1"] == 0


def test_error_code_of_client_error(config: Config) -> None:
    client = Aws(config, endpoint_url="http://127.0.0.1:5000").client(
        "ec2", "us-east-1"
    )
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_images", "InvalidAMIID.NotFound")
        with pytest.raises(Exception) as caught:
            client.describe_images(ImageIds=["ami-12345678"])

    assert error_code(caught.value) == "InvalidAMIID.NotFound"
    assert error_code(ValueError("x")) == ""
