"""The health service's config: one JSON file, rendered at bake time."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/notary/healthcheck.json")


class ConfigError(ValueError):
    """An invalid or missing config value; the message names the key and the fix."""


@dataclass(frozen=True)
class HealthConfig:
    """Settings of the health service; every field has a default for the image."""

    port: int = 7048
    bind_address: str = "0.0.0.0"
    cert_file: str = "/var/lib/notary/tls/cert.pem"
    key_file: str = "/var/lib/notary/tls/key.pem"
    notary_host: str = "127.0.0.1"
    notary_port: int = 7047
    notary_tls: bool = False
    api_key_file: str | None = None
    manifest_file: str = "/etc/notary/release.json"
    enclave_name: str = "notary"
    nitro_cli: str = "/usr/bin/nitro-cli"
    # Route 53 checkers fail an endpoint that sends no HTTP status within 2 s
    # of connecting (Route 53 Developer Guide, "How Amazon Route 53 determines
    # whether a health check is healthy"), so a probe must finish sooner.
    deadline_seconds: float = 1.5
    cache_seconds: float = 2.0
    # The whole TLS handshake plus each request's line and headers must
    # arrive within socket_timeout_seconds, however slowly the bytes trickle.
    socket_timeout_seconds: float = 5.0
    max_request_bytes: int = 8192
    # At the cap, the connection waiting longest for a request makes room.
    max_connections: int = 128
    log_repeat_seconds: float = 60.0

    def __post_init__(self) -> None:
        # Port 0 binds a free port, which the start log line names.
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range: use 1-65535")
        if not 1 <= self.notary_port <= 65535:
            raise ConfigError(
                f"notary_port {self.notary_port} is out of range: use 1-65535"
            )
        for name in ("deadline_seconds", "socket_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0, such as 2")
        for name in ("cache_seconds", "log_repeat_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or above")
        if self.max_request_bytes < 256:
            raise ConfigError(
                f"max_request_bytes {self.max_request_bytes} is too small: use "
                "256 or above, such as 8192"
            )
        if self.max_connections < 1:
            raise ConfigError("max_connections must be 1 or above, such as 128")
        if not self.enclave_name:
            raise ConfigError("enclave_name is empty: set the release's enclave name")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> HealthConfig:
        """Build a config from parsed JSON; reject unknown keys and wrong types."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object at the top level")
        known = {field.name: field for field in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key {key!r}: check its spelling or remove it"
                )
        for key, value in data.items():
            _check_type(source, key, value, known[key].default)
        try:
            return cls(**data)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: Path | str) -> HealthConfig:
        """Read and validate a config file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(
                f"cannot read config file {path}: {error.strerror}: pass --config FILE"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: "
                f"{error.msg}"
            ) from None
        return cls.from_dict(data, source=str(path))


def _check_type(source: str, key: str, value: Any, default: Any) -> None:
    # The defaults carry each field's type; None marks an optional string.
    if default is None:
        expected: tuple[type, ...] = (str, type(None))
    elif isinstance(default, bool):
        expected = (bool,)
    elif isinstance(default, int):
        expected = (int,)
    elif isinstance(default, float):
        expected = (int, float)
    else:
        expected = (str,)
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and bool not in expected):
        names = " or ".join(sorted(kind.__name__ for kind in expected))
        raise ConfigError(f"{source}: {key} is {value!r}: expected {names}")
