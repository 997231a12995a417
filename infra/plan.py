"""A plan: what a run would create, update, delete or leave unchanged.

Every reconciling step returns entries, so `--dry-run` prints the plan the
same code would carry out, and tests check plans as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PlanEntry:
    region: str
    resource: str
    name: str
    action: Action
    detail: str = ""


@dataclass
class Plan:
    entries: list[PlanEntry] = field(default_factory=list)

    def add(
        self, region: str, resource: str, name: str, action: Action, detail: str = ""
    ) -> PlanEntry:
        entry = PlanEntry(region, resource, name, action, detail)
        self.entries.append(entry)
        return entry

    def extend(self, other: Plan) -> None:
        self.entries.extend(other.entries)

    @property
    def changes(self) -> list[PlanEntry]:
        return [entry for entry in self.entries if entry.action is not Action.UNCHANGED]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)
