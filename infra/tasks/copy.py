"""Tasks for the copy stage."""

from __future__ import annotations

from typing import Any

# The tasks this module adds to the command line.
TASKS: list[Any] = []
