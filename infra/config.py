"""The deployment config: one YAML file, validated before any AWS call."""

from __future__ import annotations

import ipaddress
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import botocore.session
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.errors import UserError
from infra.geo import CONTINENTS, COUNTRIES, US_SUBDIVISIONS
from infra.instance_types import INSTANCE_TYPES, PARENT_MEMORY_MIB

DEFAULT_CONFIG = Path("deploy.yaml")
# Route 53 health checks take at most 10 tags, and this tool adds
# notary:project, notary:region and notary:component to each.
MAX_CONFIG_TAGS = 7
# Elastic Load Balancing names are at most 32 characters; the longest one this
# tool makes is the target group's, f"{project}-{region}-tg".
MAX_ELB_NAME = 32
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigValueError(ValueError):
    """A rule broken by a value, with the dotted key it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@cache
def known_regions() -> frozenset[str]:
    """Return the EC2 regions botocore's bundled endpoint data lists."""
    session = botocore.session.get_session()
    return frozenset(session.get_available_regions("ec2"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capacity(Strict):
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=1)] = 2
    desired: Annotated[int, Field(ge=0)] = 1

    @model_validator(mode="after")
    def _check_order(self) -> Capacity:
        if self.min > self.max:
            raise ValueError(
                f"min {self.min} is above max {self.max}: lower min or raise max"
            )
        if not self.min <= self.desired <= self.max:
            raise ValueError(
                f"desired {self.desired} is outside min {self.min} and max "
                f"{self.max}: set desired between them"
            )
        return self


class Geolocation(Strict):
    """Where a region's users are: continents, or countries (and US states)."""

    continents: list[str] = []
    countries: list[str] = []
    subdivisions: list[str] = []

    @field_validator("continents")
    @classmethod
    def _check_continents(cls, values: list[str]) -> list[str]:
        for code in values:
            if code not in CONTINENTS:
                raise ValueError(
                    f"unknown continent code {code!r}: use one of "
                    f"{', '.join(sorted(CONTINENTS))}"
                )
        return values

    @field_validator("countries")
    @classmethod
    def _check_countries(cls, values: list[str]) -> list[str]:
        for code in values:
            if code not in COUNTRIES:
                raise ValueError(
                    f"unknown country code {code!r}: use an ISO 3166-1 alpha-2 "
                    "code such as DE or JP"
                )
        return values

    @field_validator("subdivisions")
    @classmethod
    def _check_subdivisions(cls, values: list[str]) -> list[str]:
        for code in values:
            if code not in US_SUBDIVISIONS:
                raise ValueError(
                    f"unknown US subdivision {code!r}: use a two-letter state "
                    "code such as CA or NY"
                )
        return values

    @model_validator(mode="after")
    def _check_combination(self) -> Geolocation:
        if self.continents and (self.countries or self.subdivisions):
            raise ValueError(
                "a location takes continents or countries, not both: move the "
                "countries to another region or drop the continents"
            )
        if self.subdivisions and self.countries != ["US"]:
            raise ValueError(
                f"subdivisions {self.subdivisions} need countries: [US] alone, "
                "because Route 53 has subdivisions only for the United States"
            )
        return self

    def locations(self) -> list[tuple[str, str]]:
        """Return each location as (kind, code): continent, country or US-XX."""
        if self.subdivisions:
            return [("subdivision", f"US-{code}") for code in self.subdivisions]
        return [("continent", code) for code in self.continents] + [
            ("country", code) for code in self.countries
        ]


class VpcConfig(Strict):
    """An existing network to deploy into instead of a dedicated VPC."""

    vpc_id: str
    public_subnets: Annotated[list[str], Field(min_length=2)]
    private_subnets: Annotated[list[str], Field(min_length=2)]


class Region(Strict):
    name: str
    geolocation: Geolocation = Geolocation()
    default: bool = False
    instance_type: str | None = None
    capacity: Capacity | None = None
    kms_key_id: str | None = None
    role_arn: str | None = None
    vpc: VpcConfig | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if name not in known_regions():
            raise ValueError(
                f"unknown region {name!r}: use an AWS region name such as "
                "us-east-1 or eu-west-1"
            )
        return name

    @field_validator("role_arn")
    @classmethod
    def _check_role(cls, arn: str | None) -> str | None:
        if arn is not None and not re.fullmatch(
            r"arn:aws[\w-]*:iam::\d{12}:role/.+", arn
        ):
            raise ValueError(
                f"invalid role ARN {arn!r}: use arn:aws:iam::ACCOUNT:role/NAME"
            )
        return arn

    @model_validator(mode="after")
    def _check_location(self) -> Region:
        if not self.geolocation.locations() and not self.default:
            raise ValueError(
                f"region {self.name} serves no location: add geolocation "
                "continents or countries, or mark it default: true"
            )
        return self


class EnclaveBuild(Strict):
    """Inputs of `invoke enclave.build`: the notary image to package."""

    notary_image: str = "ghcr.io/tlsnotary/tlsn/notary-server"
    notary_version: str = "v0.1.0-alpha.12"
    notary_digest: str | None = None

    @field_validator("notary_digest")
    @classmethod
    def _check_digest(cls, digest: str | None) -> str | None:
        if digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(
                f"invalid image digest {digest!r}: use sha256: and 64 hex digits"
            )
        return digest


class Enclave(Strict):
    eif: Path | None = None
    build: EnclaveBuild = EnclaveBuild()
    cpu_count: Annotated[int, Field(ge=1)] = 2
    memory_mib: Annotated[int, Field(ge=64)] = 2048
    cid: int = 16
    vsock_port: Annotated[int, Field(ge=1, le=65535)] = 7047
    notary_port: Annotated[int, Field(ge=1, le=65535)] = 7047
    health_port: Annotated[int, Field(ge=1, le=65535)] = 7048
    debug_mode: bool = False
    name: str = "notary"
    # Whether the notary in the EIF serves TLS on notary_port, as tls.enabled
    # in enclave/image/notary-config.yaml sets it: then that port speaks TLS
    # only, so the health service, the Route 53 health check and the probe
    # must use HTTPS there. The setting is baked into the EIF, not changed here.
    notary_tls: bool = False

    @field_validator("cid")
    @classmethod
    def _check_cid(cls, cid: int) -> int:
        if cid <= 3:
            raise ValueError(
                f"enclave CID {cid} is reserved (0-3 belong to the hypervisor "
                "and the parent): use 4 or above, such as 16"
            )
        if cid >= 2**32 - 1:
            raise ValueError(
                f"enclave CID {cid} is too large: use a value below 2^32-1"
            )
        return cid

    @field_validator("debug_mode")
    @classmethod
    def _check_debug(cls, debug: bool) -> bool:
        if debug:
            raise ValueError(
                "debug_mode true is not allowed: a debug-mode enclave attests "
                "with all-zero PCRs, so users could not verify it; set false"
            )
        return debug

    @model_validator(mode="after")
    def _check_ports(self) -> Enclave:
        if self.health_port == self.notary_port:
            raise ValueError(
                f"health_port {self.health_port} equals notary_port: choose "
                "another health_port such as 7048"
            )
        return self


class Rollout(Strict):
    healthy_timeout_seconds: Annotated[int, Field(ge=10, le=86400)] = 600
    drain_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    keep_groups: Annotated[int, Field(ge=1, le=10)] = 2
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    client_cidrs: list[str] = ["0.0.0.0/0"]
    permission_boundary: str | None = None
    lock_ttl_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600

    @field_validator("client_cidrs")
    @classmethod
    def _check_cidrs(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(
                    f"invalid CIDR {cidr!r}: use a network such as 203.0.113.0/24"
                ) from None
        return cidrs


class Copy(Strict):
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    timeout_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 4 * 3600
    poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0


class HealthCheck(Strict):
    request_interval: Literal[10, 30] = 30
    failure_threshold: Annotated[int, Field(ge=1, le=10)] = 3


class Config(Strict):
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")] = "notary"
    domain: str
    hosted_zone: str
    target: Literal["local", "aws"] = "local"
    profile: str | None = None
    version: str
    enclave: Enclave = Enclave()
    instance_type: str = "m5.xlarge"
    capacity: Capacity = Capacity()
    regions: Annotated[list[Region], Field(min_length=1)]
    rollout: Rollout = Rollout()
    copy_: Copy = Field(default=Copy(), alias="copy")
    health_check: HealthCheck = HealthCheck()
    tags: dict[str, str] = {}
    # EnableImageDeprecation accepts a time at most 10 years ahead.
    deprecate_after_days: Annotated[int, Field(ge=1, le=3650)] = 365

    @field_validator("domain", "hosted_zone")
    @classmethod
    def _check_dns_name(cls, name: str) -> str:
        if not re.fullmatch(
            r"(?=.{1,253}\.?$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}\.?", name
        ):
            raise ValueError(
                f"invalid DNS name {name!r}: use lower-case labels such as "
                "notary.example.com"
            )
        return name.rstrip(".")

    @field_validator("version")
    @classmethod
    def _check_version(cls, version: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
            raise ValueError(
                f"invalid version {version!r}: use letters, digits and . _ - "
                "such as 1.0.0"
            )
        return version

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > MAX_CONFIG_TAGS:
            raise ValueError(
                f"{len(tags)} tags are too many: use at most {MAX_CONFIG_TAGS}, "
                "because Route 53 health checks take 10 tags and this tool adds 3"
            )
        for key, value in tags.items():
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r} uses the reserved prefix aws:")
            if not 1 <= len(key) <= 128:
                raise ValueError(
                    f"tag key {key[:40]!r}... is longer than 128 characters"
                )
            if len(value) > 256:
                raise ValueError(f"tag {key!r} has a value longer than 256 characters")
        return tags

    @model_validator(mode="after")
    def _check_deployment(self) -> Config:
        if not (
            self.domain == self.hosted_zone
            or self.domain.endswith("." + self.hosted_zone)
        ):
            raise ConfigValueError(
                "domain",
                f"{self.domain!r} is not inside hosted_zone {self.hosted_zone!r}: "
                "use a name under the zone",
            )
        self._check_regions()
        self._check_instance("instance_type", self.instance_type)
        for index, region in enumerate(self.regions):
            if region.instance_type:
                self._check_instance(
                    f"regions.{index}.instance_type", region.instance_type
                )
        return self

    def _check_regions(self) -> None:
        seen: dict[str, str] = {}
        owners: dict[tuple[str, str], str] = {}
        for index, region in enumerate(self.regions):
            key = f"regions.{index}.name"
            longest = f"{self.project}-{region.name}-tg"
            if len(longest) > MAX_ELB_NAME:
                raise ConfigValueError(
                    "project",
                    f"{self.project!r} is too long for region {region.name}: load "
                    f"balancer names such as {longest!r} take at most "
                    f"{MAX_ELB_NAME} characters; shorten project to at most "
                    f"{MAX_ELB_NAME - len(region.name) - 4} characters",
                )
            if region.name in seen:
                raise ConfigValueError(
                    key, f"region {region.name} is listed twice: keep one"
                )
            seen[region.name] = key
            for location in region.geolocation.locations():
                if location in owners:
                    raise ConfigValueError(
                        f"regions.{index}.geolocation",
                        f"{location[0]} {location[1]} is claimed by both "
                        f"{owners[location]} and {region.name}: keep it in one",
                    )
                owners[location] = region.name
        defaults = [region.name for region in self.regions if region.default]
        if not defaults:
            raise ConfigValueError(
                "regions",
                "no region is marked default: true; mark exactly one, so users "
                "outside every location still get an answer",
            )
        if len(defaults) > 1:
            raise ConfigValueError(
                "regions",
                f"{len(defaults)} regions are marked default ({', '.join(defaults)}): "
                "mark exactly one",
            )

    def _check_instance(self, key: str, name: str) -> None:
        spec = INSTANCE_TYPES.get(name)
        if spec is None:
            raise ConfigValueError(
                key,
                f"unknown instance type {name!r}: use an enclave-capable type such "
                "as m5.xlarge or c6a.xlarge, or add it to infra/instance_types.py",
            )
        if not spec.enclaves:
            raise ConfigValueError(
                key,
                f"instance type {name} does not support Nitro Enclaves: use "
                "m5.xlarge, c6a.xlarge or another enclave-capable type",
            )
        cpus_needed = self.enclave.cpu_count + spec.parent_vcpus
        if cpus_needed > spec.vcpus:
            raise ConfigValueError(
                key,
                f"instance type {name} has {spec.vcpus} vCPUs, too few for "
                f"enclave.cpu_count {self.enclave.cpu_count} plus "
                f"{spec.parent_vcpus} kept by the parent: choose a larger type "
                "or lower cpu_count",
            )
        if not spec.graviton and self.enclave.cpu_count % 2:
            raise ConfigValueError(
                "enclave.cpu_count",
                f"{self.enclave.cpu_count} is odd: on {name} enclaves take whole "
                "cores, so use an even count such as 2",
            )
        memory_needed = self.enclave.memory_mib + PARENT_MEMORY_MIB
        if memory_needed > spec.memory_mib:
            raise ConfigValueError(
                key,
                f"instance type {name} has {spec.memory_mib} MiB, too little for "
                f"enclave.memory_mib {self.enclave.memory_mib} plus "
                f"{PARENT_MEMORY_MIB} MiB kept by the parent: lower memory_mib "
                "or choose a larger type",
            )

    # Lookups used by every stage.

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise UserError(
            f"region {name!r} is not in the config: use one of "
            f"{', '.join(self.region_names)}"
        )

    @property
    def region_names(self) -> list[str]:
        return [region.name for region in self.regions]

    @property
    def default_region(self) -> Region:
        return next(region for region in self.regions if region.default)

    def instance_type_for(self, region: str) -> str:
        return self.region(region).instance_type or self.instance_type

    def capacity_for(self, region: str) -> Capacity:
        return self.region(region).capacity or self.capacity

    def resource_tags(self, **extra: str) -> dict[str, str]:
        """Return the tags every resource carries, plus `extra`."""
        return {**self.tags, "notary:project": self.project, **extra}


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key given twice in one mapping, which
    plain YAML loading settles silently in favour of the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "config"
    context = first.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, ConfigValueError):
        key = cause.key
        message = str(cause)
    elif first["type"] == "extra_forbidden":
        message = f"unknown key {first['loc'][-1]!r}: check its spelling or remove it"
    elif first["type"] == "missing":
        message = "missing: add this key"
    elif first["type"] == "string_type":
        message = (
            f"{first.get('input')!r} is not a string: quote it, such as "
            f'"{first.get("input")}"'
        )
    else:
        message = first["msg"].removeprefix("Value error, ")
        value = first.get("input")
        if (
            value is not None
            and not isinstance(value, dict | list)
            and repr(value) not in message
        ):
            message = f"{value!r}: {message}"
    return f"{key}: {message}"


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate already-loaded YAML data; raise UserError with one line."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of keys at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise UserError(f"{source}: {_format_error(error)}") from None


def load_config(path: Path | str = DEFAULT_CONFIG) -> Config:
    """Read and validate a deployment config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"config file {path} not found: pass --config FILE or copy deploy.yaml"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise UserError(
            f"config file {path} cannot be read ({reason}): pass a YAML file"
        ) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    config = parse_config(data, str(path))
    if config.enclave.eif is not None and not config.enclave.eif.is_absolute():
        resolved = (path.resolve().parent / config.enclave.eif).resolve()
        config = config.model_copy(
            update={"enclave": config.enclave.model_copy(update={"eif": resolved})}
        )
    # The release's inputs are checked here, with the file system at hand.
    if config.target == "aws" and config.enclave.eif is None:
        raise UserError(
            f"{path}: enclave.eif: missing: target aws needs the notary's EIF, "
            "because the sample EIF does not boot on Nitro; build one with "
            "invoke enclave.build"
        )
    if config.enclave.eif is not None and not config.enclave.eif.is_file():
        raise UserError(
            f"{path}: enclave.eif: {config.enclave.eif} not found: build it with "
            "invoke enclave.build, or fix the path"
        )
    return config
