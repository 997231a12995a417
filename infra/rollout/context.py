"""The state every rollout step of one region shares: clients, names, tags, plan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra import tags
from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError
from infra.plan import Action, Plan, PlanEntry

log = logging.getLogger(__name__)

# Stands for the id of a resource that a dry run would create, so later steps
# can plan against it without an AWS call.
PENDING = "(new)"

# Elastic Load Balancing caps load balancer and target group names at 32.
MAX_ELB_NAME = 32


@dataclass(frozen=True)
class Timing:
    """Waits of a rollout, in seconds; tests shrink them."""

    healthy_timeout: float
    drain: float
    poll_interval: float = 10.0
    delete_timeout: float = 900.0

    @classmethod
    def from_config(cls, config: Config, **overrides: float) -> Timing:
        values: dict[str, float] = {
            "healthy_timeout": config.rollout.healthy_timeout_seconds,
            "drain": config.rollout.drain_seconds,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class RegionContext:
    """One region's run: where steps read, what they plan, whether they write."""

    aws: Aws
    config: Config
    region: str
    dry_run: bool
    plan: Plan = field(default_factory=Plan)
    # Called with a step's name after the step; tests use it to stop a run.
    after_step: Callable[[str], None] | None = None
    # A preview that only decides whether to run: once it has found a change,
    # it may skip reads whose answer no longer matters.
    change_check: bool = False

    def client(self, service: str) -> Any:
        return self.aws.client(service, self.region)

    @property
    def base_name(self) -> str:
        """Return the name of the region's load balancer and launch template."""
        return f"{self.config.project}-{self.region}"

    def elb_name(self, suffix: str = "") -> str:
        name = self.base_name + suffix
        if len(name) > MAX_ELB_NAME:
            raise UserError(
                f"name {name!r} is longer than {MAX_ELB_NAME} characters, the "
                "Elastic Load Balancing limit: shorten the config's project"
            )
        return name

    def tags(self, component: str, **extra: str) -> dict[str, str]:
        return self.config.resource_tags(
            **{tags.REGION: self.region, tags.COMPONENT: component, **extra}
        )

    def tag_list(self, component: str, **extra: str) -> list[dict[str, str]]:
        return tags.to_list(self.tags(component, **extra))

    def tag_specs(self, kind: str, component: str, **extra: str) -> list[Any]:
        """Return EC2 TagSpecifications, so a resource is tagged as it is made."""
        return [{"ResourceType": kind, "Tags": self.tag_list(component, **extra)}]

    def tag_filters(self, component: str) -> list[dict[str, Any]]:
        """Return EC2 filters that find this region's resources of `component`."""
        return [
            {"Name": f"tag:{tags.PROJECT}", "Values": [self.config.project]},
            {"Name": f"tag:{tags.REGION}", "Values": [self.region]},
            {"Name": f"tag:{tags.COMPONENT}", "Values": [component]},
        ]

    def owns(self, resource_tags: dict[str, str], component: str) -> bool:
        return (
            resource_tags.get(tags.PROJECT) == self.config.project
            and resource_tags.get(tags.REGION) == self.region
            and resource_tags.get(tags.COMPONENT) == component
        )

    def record(
        self, resource: str, name: str, action: Action, detail: str = ""
    ) -> PlanEntry:
        entry = self.plan.add(self.region, resource, name, action, detail)
        if action is not Action.UNCHANGED:
            verb = "Planned" if self.dry_run else "Applying"
            log.info("%s %s: %s %s %s", verb, self.region, action, resource, name)
        return entry

    def plan_has_created(self, resource: str, name: str) -> bool:
        """Return whether this run creates `resource` `name`: a dry run then
        has nothing in AWS to read about it."""
        return any(
            entry.resource == resource
            and entry.name == name
            and entry.action is Action.CREATE
            for entry in self.plan.entries
        )

    def step_done(self, step: str) -> None:
        if self.after_step is not None:
            self.after_step(step)
