"""The hosted zone: find it, read its records, write one batch and wait."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra.aws import error_code
from infra.config import Config
from infra.dns.rules import normalize_name
from infra.dns.throttle import call
from infra.errors import UserError
from infra.poll import PollTimeout, poll

log = logging.getLogger(__name__)

# Backoff for PriorRequestNotComplete, on top of the retries botocore's
# adaptive mode already makes: 1, 2, 4 ... seconds capped at 20, each pause
# cut to a random 50-100% so that concurrent regions spread out.
PRIOR_REQUEST_ATTEMPTS = 8
PRIOR_REQUEST_BASE_SECONDS = 1.0
PRIOR_REQUEST_MAX_SECONDS = 20.0


def find_zone(route53: Any, config: Config) -> str | None:
    """Return the id of the public hosted zone named `config.hosted_zone`, or None.

    Raise UserError when more than one public zone has that name, because
    records in the wrong one would never be served.
    """
    name = config.hosted_zone
    answer = call(route53, "list_hosted_zones_by_name", DNSName=name, MaxItems="100")
    matches = [
        zone["Id"].rsplit("/", 1)[-1]
        for zone in answer.get("HostedZones", [])
        if normalize_name(zone["Name"]) == name
        and not zone.get("Config", {}).get("PrivateZone", False)
    ]
    if len(matches) > 1:
        raise UserError(
            f"hosted zone {name} exists {len(matches)} times ({', '.join(matches)}): "
            "delete the extra public zones so that one zone serves the domain"
        )
    return matches[0] if matches else None


def create_zone(route53: Any, config: Config) -> str:
    """Create the public hosted zone `config.hosted_zone` and return its id."""
    reference = f"{config.project}-{config.hosted_zone}"
    answer = call(
        route53,
        "create_hosted_zone",
        Name=config.hosted_zone,
        CallerReference=reference,
        HostedZoneConfig={"Comment": f"{config.project} notary", "PrivateZone": False},
    )
    zone_id = str(answer["HostedZone"]["Id"].rsplit("/", 1)[-1])
    log.info("Created hosted zone %s (%s)", config.hosted_zone, zone_id)
    return zone_id


def list_records(route53: Any, zone_id: str, name: str) -> list[dict[str, Any]]:
    """Return the zone's record sets named `name`, of every type."""
    params: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": name}
    records: list[dict[str, Any]] = []
    while True:
        answer = call(route53, "list_resource_record_sets", **params)
        for record in answer.get("ResourceRecordSets", []):
            if normalize_name(record["Name"]) != name:
                return records
            records.append(record)
        if not answer.get("IsTruncated"):
            return records
        following = {
            "StartRecordName": answer["NextRecordName"],
            "StartRecordType": answer["NextRecordType"],
        }
        if "NextRecordIdentifier" in answer:
            following["StartRecordIdentifier"] = answer["NextRecordIdentifier"]
        if all(params.get(key) == value for key, value in following.items()):
            return records
        params.update(following)


def submit_changes(
    route53: Any,
    zone_id: str,
    changes: list[dict[str, Any]],
    *,
    comment: str,
    attempts: int = PRIOR_REQUEST_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Send one atomic change batch; return the change id.

    Route 53 returns PriorRequestNotComplete while another change to the zone
    is still being applied, which happens when regions roll out at once. The
    batch is then sent again after a growing pause, up to `attempts` times.
    """
    attempt = 1
    while True:
        try:
            answer = call(
                route53,
                "change_resource_record_sets",
                HostedZoneId=zone_id,
                ChangeBatch={"Comment": comment, "Changes": changes},
            )
            break
        except ClientError as error:
            if error_code(error) != "PriorRequestNotComplete" or attempt >= attempts:
                raise
            pause = min(
                PRIOR_REQUEST_MAX_SECONDS,
                PRIOR_REQUEST_BASE_SECONDS * 2 ** (attempt - 1),
            )
            pause *= random.uniform(0.5, 1.0)
            log.info(
                "Zone %s is busy with a prior change, retrying in %.1f s (attempt "
                "%d of %d)",
                zone_id,
                pause,
                attempt,
                attempts,
            )
            sleep(pause)
            attempt += 1
    change_id = str(answer["ChangeInfo"]["Id"].rsplit("/", 1)[-1])
    log.info("Submitted %d record changes to zone %s", len(changes), zone_id)
    return change_id


def wait_insync(
    route53: Any,
    change_id: str,
    *,
    poll_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until GetChange reports the change INSYNC on every Route 53 server."""

    def insync() -> bool | None:
        answer = call(route53, "get_change", Id=change_id)
        return True if answer["ChangeInfo"]["Status"] == "INSYNC" else None

    try:
        poll(
            insync,
            timeout=timeout_seconds,
            interval=poll_seconds,
            description=f"Route 53 change {change_id} to be INSYNC",
            sleep=sleep,
        )
    except PollTimeout as error:
        raise UserError(
            f"{error}: the records are saved but not yet served everywhere, so "
            "run again later to check; nothing needs undoing"
        ) from None
    log.info("Route 53 change %s is INSYNC", change_id)
