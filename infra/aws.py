"""boto3 clients for one deployment: the local emulator or a real account."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import boto3
import botocore.config

from infra.config import Config
from infra.errors import UserError

log = logging.getLogger(__name__)

# Adaptive mode adds client-side rate limiting on throttling errors, which
# Route 53 (about five requests per second per account) needs most.
RETRY_CONFIG = botocore.config.Config(
    retries={"mode": "adaptive", "total_max_attempts": 8},
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=32,
)

# The emulator accepts any credentials; these never reach AWS because every
# local client is pinned to the emulator's loopback endpoint.
EMULATOR_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


class Aws:
    """Create and cache clients per (service, region) for one target.

    With `target: local` every client points at `endpoint_url`, the emulator on
    loopback. With `target: aws` clients use the named profile and, where a
    region sets `role_arn`, credentials from assuming that role.
    """

    def __init__(self, config: Config, *, endpoint_url: str | None = None) -> None:
        if config.target == "local" and not endpoint_url:
            raise UserError(
                "target local needs the emulator endpoint: run invoke emulator.start"
            )
        if config.target == "aws" and endpoint_url:
            raise UserError(
                f"target aws must not use the emulator endpoint {endpoint_url}: "
                "set target: local to use the emulator"
            )
        self.config = config
        self.endpoint_url = endpoint_url
        self.calls: Counter[str] = Counter()
        self._clients: dict[tuple[str, str], Any] = {}
        self._sessions: dict[str, boto3.Session] = {}
        self._lock = threading.Lock()

    @property
    def local(self) -> bool:
        return self.config.target == "local"

    def _session(self, region: str) -> boto3.Session:
        if region in self._sessions:
            return self._sessions[region]
        if self.local:
            session = boto3.Session(
                region_name=region,
                aws_access_key_id=EMULATOR_CREDENTIALS["aws_access_key_id"],
                aws_secret_access_key=EMULATOR_CREDENTIALS["aws_secret_access_key"],
                aws_session_token=EMULATOR_CREDENTIALS["aws_session_token"],
            )
        else:
            session = boto3.Session(
                profile_name=self.config.profile, region_name=region
            )
            role_arn = self._role_for(region)
            if role_arn:
                session = _assume_role(session, role_arn, region)
        self._sessions[region] = session
        return session

    def _role_for(self, region: str) -> str | None:
        for entry in self.config.regions:
            if entry.name == region:
                return entry.role_arn
        return None

    def client(self, service: str, region: str) -> Any:
        """Return a client for `service` in `region`; safe to call from threads."""
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                session = self._session(region)
                client = session.client(
                    service,  # type: ignore[call-overload]
                    region_name=region,
                    endpoint_url=self.endpoint_url,
                    config=RETRY_CONFIG,
                )
                client.meta.events.register(
                    "before-parameter-build", self._count_call(region)
                )
                self._clients[key] = client
            return self._clients[key]

    def _count_call(self, region: str) -> Any:
        def count(**_: Any) -> None:
            self.calls[region] += 1

        return count


def _assume_role(session: boto3.Session, role_arn: str, region: str) -> boto3.Session:
    sts = session.client("sts", region_name=region, config=RETRY_CONFIG)
    log.info("Assuming role %s for %s", role_arn, region)
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName="notary-deploy")
    credentials = answer["Credentials"]
    return boto3.Session(
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def error_code(error: Exception) -> str:
    """Return the AWS error code of a botocore ClientError, or ''."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
