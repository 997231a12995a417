"""Checks against AWS that run before a rollout creates anything."""

from __future__ import annotations

import logging

from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError

log = logging.getLogger(__name__)


def check_instance_type(aws: Aws, config: Config, region: str) -> None:
    """Raise UserError unless the region offers the instance type with Nitro
    Enclaves support.

    The config is checked against a built-in table already. With `target: aws`
    this calls DescribeInstanceTypes, which is the authority. Local runs skip
    the call because the emulator's data adds nothing to the table.
    """
    if config.target != "aws":
        return
    name = config.instance_type_for(region)
    ec2 = aws.client("ec2", region)
    try:
        found = ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
    except ec2.exceptions.ClientError as error:
        raise UserError(
            f"instance type {name} is not offered in {region} ({error}): choose "
            "another instance_type for this region"
        ) from None
    if not found:
        raise UserError(
            f"instance type {name} is not offered in {region}: choose another "
            "instance_type for this region"
        )
    support = found[0].get("NitroEnclavesSupport", "unsupported")
    if support != "supported":
        raise UserError(
            f"instance type {name} in {region} reports NitroEnclavesSupport "
            f"{support!r}: choose an enclave-capable type such as m5.xlarge"
        )
    log.debug("%s supports Nitro Enclaves in %s", name, region)
