"""Which 3.x experiment a migrated run belongs to, and which run heads it.

In 3.x an experiment name belongs to one run at a time, its head: the last run created (or resumed) with that
name. Legacy runs that share a `sys/name` would therefore end with whichever run the import reached last as
the head, which depends on import order, parallelism and resumes. nmig decides it from the bundle instead:
the head of an experiment is the run with the latest legacy creation time, ties broken by the larger legacy
id (VIS-10 after VIS-9), and after every import the head is asserted again (a CreateRun of that run with the
name, which moves the name to it). So the result is the same whatever the order, the workers, a kill and
re-run, or a --runs subset (the head is the latest among the runs imported so far).

Modes (`nmig import --experiments`):
* by-name (default): a run joins the experiment named after its legacy `sys/name`, except the legacy
  client's default name "Untitled" (neptune/internal/init/parameters.py:28, DEFAULT_NAME), which names
  unrelated runs and would merge them into one experiment: such a run is a plain run (its name stays in
  legacy_sys/name). Runs deliberately given one name are grouped the way 3.x groups them.
* none: every run is a plain run (no experiment), as Neptune's own one-shot copier imports them; the legacy
  names stay in legacy_sys/name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from nmig.importer import limits

MODES = ("by-name", "none")
DEFAULT_MODE = "by-name"
# (mode, what it does, why), rendered into docs/mapping.md and the README by rules.mapping_table_markdown.
MODE_DOCS: tuple[tuple[str, str, str], ...] = (
    (
        "by-name (default)",
        "a run joins the 3.x experiment named after its legacy `sys/name`; the head of each experiment is its run "
        "with the latest legacy creation time (ties: the larger legacy id), asserted again at the end of every "
        "import, so import order, workers, kills and re-runs do not change it; the legacy default name "
        "`Untitled` names no experiment (such runs are plain runs, reported as experiment_not_named)",
        "3.x groups runs into experiments by name and shows the head of each in its experiment views, which is "
        "how 2.x users named runs on purpose; `Untitled` is what the 2.x client names every unnamed run, and "
        "grouping those would merge unrelated runs into one experiment",
    ),
    (
        "none",
        "every run is a plain run, in no experiment (as Neptune's own one-shot copier imports them); the "
        "legacy name stays in `legacy_sys/name`",
        "for projects whose run names are not meant as groups",
    ),
)
LEGACY_DEFAULT_NAME = "Untitled"
_OLDEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def experiment_name(legacy_name: str, mode: str) -> tuple[str | None, str | None]:
    """(the 3.x experiment name of a run whose legacy sys/name is `legacy_name` (fitted to 3.x's limit), or
    None; why it has none, when the mode would have given it one)."""
    if mode not in MODES:
        raise ValueError(f"experiments mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "none" or not legacy_name:
        return None, None
    if legacy_name == LEGACY_DEFAULT_NAME:
        return None, f"{LEGACY_DEFAULT_NAME!r} is the legacy client's default name: it names no experiment (it would merge unrelated runs)"
    return limits.fit_experiment_name(legacy_name), None


def _id_key(sys_id: str) -> list[Any]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", sys_id)]


def head_key(creation_time: dt.datetime | None, sys_id: str) -> tuple[Any, ...]:
    """The order of runs within an experiment: the head is the greatest (latest creation, then larger id)."""
    return (creation_time or _OLDEST, _id_key(sys_id))


def heads(members: Iterable[tuple[Any, ...]]) -> dict[str, str]:
    """{experiment name: legacy id of its head} of (experiment name, creation time, legacy id, ...) tuples."""
    best: dict[str, tuple[tuple[Any, ...], str]] = {}
    for name, created, sys_id, *_ in members:
        key = head_key(created, sys_id)
        if name not in best or key > best[name][0]:
            best[name] = (key, sys_id)
    return {name: sys_id for name, (_, sys_id) in best.items()}


def shared_names(members: Iterable[tuple[Any, ...]]) -> set[str]:
    """The experiment names more than one run has (only those need their head asserted)."""
    seen: set[str] = set()
    shared: set[str] = set()
    for name, *_ in members:
        (shared if name in seen else seen).add(name)
    return shared
