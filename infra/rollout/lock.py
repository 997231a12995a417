"""A deployment lock per region: one DynamoDB item written conditionally.

The item records its holder and an expiry. A lock past its expiry is stale:
it is reported with its holder and taken only with `force`, because its
holder may still be running on a slow network.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError
from infra.tags import COMPONENT, REGION, to_list

log = logging.getLogger(__name__)


class LockHeld(UserError):
    """Another run holds the region's lock."""


@dataclass(frozen=True)
class LockRecord:
    holder: str
    acquired_at: float
    expires_at: float


def table_name(config: Config) -> str:
    return f"{config.project}-rollout-lock"


def default_holder() -> str:
    """Return who is running: user, host, process and a random suffix."""
    return (
        f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}:"
        f"{uuid.uuid4().hex[:8]}"
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ensure_table(aws: Aws, region: str, *, timeout: float = 300.0) -> None:
    """Create the lock table in `region` unless it exists; wait until active."""
    dynamodb = aws.client("dynamodb", region)
    name = table_name(aws.config)
    try:
        status = dynamodb.describe_table(TableName=name)["Table"]["TableStatus"]
    except dynamodb.exceptions.ResourceNotFoundException:
        log.info("Creating lock table %s in %s", name, region)
        table_tags = aws.config.resource_tags(
            **{REGION: region, COMPONENT: "lock-table"}
        )
        # Another run may create the table at the same moment.
        with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": "region", "AttributeType": "S"}
                ],
                KeySchema=[{"AttributeName": "region", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                Tags=to_list(table_tags),
            )
        status = "CREATING"
    if status != "ACTIVE":
        dynamodb.get_waiter("table_exists").wait(
            TableName=name,
            WaiterConfig={"Delay": 2, "MaxAttempts": max(int(timeout / 2), 1)},
        )


def read_lock(aws: Aws, region: str) -> LockRecord | None:
    dynamodb = aws.client("dynamodb", region)
    try:
        item = dynamodb.get_item(
            TableName=table_name(aws.config),
            Key={"region": {"S": region}},
            ConsistentRead=True,
        ).get("Item")
    except dynamodb.exceptions.ResourceNotFoundException:
        return None
    if not item:
        return None
    return LockRecord(
        holder=item["holder"]["S"],
        acquired_at=float(item["acquired_at"]["N"]),
        expires_at=float(item["expires_at"]["N"]),
    )


def acquire(
    aws: Aws,
    region: str,
    *,
    holder: str,
    ttl: float,
    force: bool = False,
    clock: Callable[[], float] = time.time,
) -> LockRecord:
    """Take the region's lock for `ttl` seconds, or raise LockHeld."""
    ensure_table(aws, region)
    dynamodb = aws.client("dynamodb", region)
    now = clock()
    record = LockRecord(holder=holder, acquired_at=now, expires_at=now + ttl)
    item = {
        "region": {"S": region},
        "holder": {"S": holder},
        "acquired_at": {"N": f"{now:.3f}"},
        "expires_at": {"N": f"{record.expires_at:.3f}"},
    }
    options: dict[str, Any] = {}
    if force:
        previous = read_lock(aws, region)
        if previous is not None:
            log.warning(
                "Breaking the %s lock held by %s since %s",
                region,
                previous.holder,
                _iso(previous.acquired_at),
            )
    else:
        options = {
            "ConditionExpression": "attribute_not_exists(#r)",
            "ExpressionAttributeNames": {"#r": "region"},
        }
    try:
        dynamodb.put_item(TableName=table_name(aws.config), Item=item, **options)
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise _held_error(aws, region, clock()) from None
    log.info("Locked %s for %s", region, holder)
    return record


def _held_error(aws: Aws, region: str, now: float) -> LockHeld:
    current = read_lock(aws, region)
    if current is None:
        return LockHeld(f"the lock of {region} changed hands: run again")
    if current.expires_at <= now:
        return LockHeld(
            f"stale lock on {region}: held by {current.holder} since "
            f"{_iso(current.acquired_at)}, expired {_iso(current.expires_at)}; "
            "make sure that run is gone, then pass --force to break it"
        )
    return LockHeld(
        f"{region} is locked by {current.holder} since {_iso(current.acquired_at)} "
        f"until {_iso(current.expires_at)}: another run is in progress; wait, or "
        "pass --force if that run is gone"
    )


def release(aws: Aws, region: str, *, holder: str) -> None:
    """Delete the lock if `holder` still has it."""
    dynamodb = aws.client("dynamodb", region)
    try:
        dynamodb.delete_item(
            TableName=table_name(aws.config),
            Key={"region": {"S": region}},
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={":me": {"S": holder}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        log.warning("The %s lock is no longer held by %s: left alone", region, holder)
    else:
        log.info("Unlocked %s", region)


@contextmanager
def region_lock(
    aws: Aws, region: str, *, holder: str, ttl: float, force: bool = False
) -> Iterator[LockRecord]:
    record = acquire(aws, region, holder=holder, ttl=ttl, force=force)
    try:
        yield record
    finally:
        release(aws, region, holder=holder)
