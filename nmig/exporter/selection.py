"""Which entities an export run handles: --runs matching, resume and --update (--shard: nmig.sharding).

Pure logic on plain values, so it is tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from nmig.errors import NmigError


class RunMatcher:
    """--runs: each value is an exact sys/id or sys/custom_run_id, or a regular expression that must match one
    of them in full (so VIS-1 does not also pick VIS-12)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.exact = set(patterns)
        self.regexes: list[re.Pattern[str]] = []
        for pattern in patterns:
            try:
                self.regexes.append(re.compile(pattern))
            except re.error as exc:
                raise NmigError(f"--runs {pattern!r}: not a valid regular expression ({exc})") from None

    def __bool__(self) -> bool:
        return bool(self.exact)

    def matches(self, sys_id: str, custom_run_id: str | None) -> bool:
        if not self.exact:
            return True
        candidates = [sys_id] + ([custom_run_id] if custom_run_id else [])
        if any(c in self.exact for c in candidates):
            return True
        return any(rx.fullmatch(c) for rx in self.regexes for c in candidates)


@dataclass(frozen=True)
class Existing:
    """What the bundle already holds for an entity."""

    complete: bool
    modification_time: str | None


def needs_export(existing: Existing | None, modification_time: str | None, update: bool) -> str | None:
    """Why an entity must be (re-)exported, or None if the bundle's copy stands."""
    if existing is None:
        return "new"
    if not existing.complete:
        return "incomplete before"
    if update and modification_time is not None:
        # Both are "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC, so text order is time order.
        if existing.modification_time is None or modification_time > existing.modification_time:
            return "modified since"
    return None


class ProjectMatcher:
    """`--projects REGEX` / `--exclude-projects REGEX` of a workspace export: a project is chosen when its name
    (without the workspace) matches the first in full, or there is none, and does not match the second in full."""

    def __init__(self, include: str | None, exclude: str | None) -> None:
        self.include = _compile_project_pattern("--projects", include)
        self.exclude = _compile_project_pattern("--exclude-projects", exclude)

    def matches(self, name: str) -> bool:
        if self.include is not None and not self.include.fullmatch(name):
            return False
        return self.exclude is None or not self.exclude.fullmatch(name)


def _compile_project_pattern(option: str, pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise NmigError(f"{option} {pattern!r} is not a valid regular expression: {exc}") from None


_PROJECT = re.compile(r"[^/\s]+/[^/\s]+")


def validate_project(name: str | None) -> str:
    if not name or not name.strip():
        raise NmigError("no project: pass --project WORKSPACE/PROJECT or set NEPTUNE_PROJECT")
    name = name.strip()
    if not _PROJECT.fullmatch(name):
        raise NmigError(f"--project {name!r}: expected WORKSPACE/PROJECT")
    return name
