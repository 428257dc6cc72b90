"""The import state file: which runs of a bundle are imported into which project, written atomically.

A run is "started" before anything is sent for it, and "imported" only after the client confirmed that the
service processed everything sent and no error came back. A run found "started" or "failed" on a re-run is
resumed (the target is asked what it already holds). One state file per target project.

Format 2 also records, per imported run, the `version` of its bundle that was imported (EntityBundle.version)
and, beside the state file in `<state stem>.synced/<sys_id>.json`, what was written (sync.SyncRecord): a run
whose bundle has another version (after `nmig export --update`) is re-synced (the cut-over). Format 1 files
are read as they are: their imported runs have no recorded version, so each is re-synced once.

`nmig import --shard I/N` keeps its own state file, the project's name tagged with the shard
(`import-state.<ws>__<project>.shard-1-of-4.json`, nmig.sharding.tagged), so N processes never write one
file. Every import also reads the state files of the other shards of the project next to its own (and the
untagged one): a run any of them says is imported is imported (at the version it records), and one they say
is started is resumed. So an import without --shard, or with another N, after a sharded one still imports
every run exactly once. While a sharded import runs, an unsharded one of the same project refuses to start,
and the other way round (StateLock); so does a sharded one of another N.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmig.atomic import write_atomically
from nmig.errors import NmigError
from nmig.schema import local_path, local_state_dir
from nmig.sharding import SHARD_TAG, Shard, tagged, tagged_siblings

STATE_FORMAT = "nmig-import-state"
STATE_VERSION = 2
STARTED, IMPORTED, FAILED = "started", "imported", "failed"


def _slug(project: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", project.replace("/", "__"))


def default_state_path(bundle_dir: Path | str, project: str) -> Path:
    """Inside a local bundle; for a bundle on object storage, in a folder of this machine kept for it
    (nmig.schema.local_state_dir): the flock below guards a local file only, and the store stays read-only."""
    folder = local_path(bundle_dir) or local_state_dir(bundle_dir)
    return folder / f"import-state.{_slug(project)}.json"


def state_family(state_path: Path) -> list[Path]:
    """The state files of one project's import next to an untagged `state_path`: itself and every shard's
    (those that exist)."""
    return [p for p in [state_path, *tagged_siblings(state_path)] if p.is_file()]


def write_json_atomically(path: Path, doc: Any) -> None:
    """The state file and the import report: readers see the old content or the new, never half (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode(), durable=True)


@dataclass
class RunState:
    status: str
    target_run_id: str
    attempts: int = 0
    earlier_errors: list[dict[str, str]] | None = None
    version: str | None = None  # the bundle version (EntityBundle.version) last imported whole


def _lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class StateLock:
    """One `nmig import` per state file at a time: a second one would send the same runs twice over.

    `state_path` is the untagged state file; with a shard, that shard's file is locked exclusively and the
    untagged one shared: the N shards of an import run at once, an unsharded import (which locks the untagged
    file exclusively) waits for none of them, and a shard of another N refuses while any of these runs."""

    def __init__(self, state_path: Path, shard: Shard | None = None) -> None:
        self._base = state_path
        self._shard = shard
        self._files: list[Any] = []

    def __enter__(self) -> StateLock:
        import fcntl

        self._base.parent.mkdir(parents=True, exist_ok=True)
        base_lock = _lock_path(self._base)
        try:
            if self._shard is None:
                self._take(base_lock, fcntl.LOCK_EX, f"another nmig import is using {self._base} (with or without --shard); wait for it to finish")
                return self
            self._take(base_lock, fcntl.LOCK_SH, f"an nmig import without --shard is using {self._base}; wait for it to finish")
            own = tagged(self._base, self._shard)
            self._take(_lock_path(own), fcntl.LOCK_EX, f"another nmig import --shard {self._shard} is using {own}; wait for it to finish")
            # Holding ours first, then looking: of two shards of different N starting at once, at least one
            # sees the other.
            for other in tagged_siblings(self._base, ".lock"):
                match = SHARD_TAG.search(other.name)
                if match is None or int(match.group(2)) == self._shard.count:
                    continue
                with open(other, "a+") as probe:
                    try:
                        fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        raise NmigError(
                            f"an nmig import --shard {match.group(1)}/{match.group(2)} is running on {self._base}; "
                            f"every shard of one import needs the same N (here {self._shard.count})"
                        ) from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def _take(self, path: Path, mode: int, busy: str) -> None:
        import fcntl

        file = open(path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(file.fileno(), mode | fcntl.LOCK_NB)
        except OSError:
            file.close()
            raise NmigError(busy) from None
        self._files.append(file)

    def __exit__(self, *exc: Any) -> None:
        for file in reversed(self._files):
            file.close()  # closing releases the lock; the empty lock file stays (harmless)
        self._files = []


def _read_runs(path: Path, project: str) -> dict[str, RunState]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NmigError(f"state file {path} is unreadable ({exc}); move it away to start over") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise NmigError(f"{path} is not an nmig import state file")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > STATE_VERSION:
        raise NmigError(
            f"state file {path} has format {doc.get('format_version')!r}, newer than this nmig reads "
            f"({STATE_VERSION}); use a newer nmig"
        )
    if doc.get("project") != project:
        raise NmigError(
            f"state file {path} belongs to project {doc.get('project')!r}, not {project!r}; pass --state for another"
        )
    runs = {}
    for sys_id, entry in (doc.get("runs") or {}).items():
        if isinstance(entry, dict) and entry.get("status") in (STARTED, IMPORTED, FAILED):
            version = entry.get("version")
            runs[sys_id] = RunState(
                entry["status"], str(entry.get("target_run_id")), int(entry.get("attempts") or 0),
                entry.get("earlier_errors"), version if isinstance(version, str) else None,
            )
    return runs


class ImportState:
    """Thread-safe; every change is written through to disk before the call returns.

    `others`: the state files of the other shards of this import (state_family), read once. Where this file
    says nothing of a run, or another says it is imported, the other file's entry counts (`status`,
    `version`, `home`: an imported entry first, then the latest version). Only `path` is written."""

    def __init__(self, path: Path, project: str, bundle_dir: Path | str, others: list[Path] | None = None) -> None:
        self.path = path
        self.project = project
        self._lock = threading.Lock()
        self.runs: dict[str, RunState] = _read_runs(path, project) if path.exists() else {}
        self.others = [p for p in others or [] if p != path]
        self.elsewhere: dict[str, tuple[RunState, Path]] = {}  # legacy id -> its entry in the other files
        for other in self.others:
            for sys_id, entry in _read_runs(other, project).items():
                kept = self.elsewhere.get(sys_id)
                if kept is None or (kept[0].status != IMPORTED and entry.status == IMPORTED):
                    self.elsewhere[sys_id] = (entry, other)
        local = local_path(bundle_dir)
        self._bundle = str(local.resolve()) if local is not None else str(bundle_dir)

    def _entry(self, sys_id: str) -> tuple[RunState, Path] | None:
        own = self.runs.get(sys_id)
        other = self.elsewhere.get(sys_id)
        if own is not None and not (other is not None and other[0].status == IMPORTED and own.status != IMPORTED):
            return own, self.path
        return other  # confirmed whole under another file: nothing an attempt recorded here changes that

    def status(self, sys_id: str) -> str | None:
        entry = self._entry(sys_id)
        return entry[0].status if entry else None

    def version(self, sys_id: str) -> str | None:
        """The bundle version of the run that was last imported whole (None: never, or by format 1)."""
        entry = self._entry(sys_id)
        return entry[0].version if entry else None

    def home(self, sys_id: str) -> Path:
        """The state file whose entry of the run counts (beside it: the run's sync record)."""
        entry = self._entry(sys_id)
        return entry[1] if entry else self.path

    def mark(
        self, sys_id: str, status: str, target_run_id: str, errors: list[dict[str, str]] | None = None,
        version: str | None = None,
    ) -> None:
        """`version`: with IMPORTED, the bundle version now in the target (kept through later STARTED and
        FAILED marks, so a re-sync interrupted at any point is recognised as one)."""
        with self._lock:
            entry = self.runs.get(sys_id)
            if entry is None:
                entry = self.runs[sys_id] = RunState(status, target_run_id)
            entry.status = status
            entry.target_run_id = target_run_id
            if status == IMPORTED:
                entry.version = version
            if status == STARTED:
                entry.attempts += 1
            if errors:
                entry.earlier_errors = (entry.earlier_errors or []) + errors
            self._save()

    def _save(self) -> None:
        doc = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "project": self.project,
            "bundle": self._bundle,
            "runs": {
                sys_id: {
                    "status": e.status,
                    "target_run_id": e.target_run_id,
                    "attempts": e.attempts,
                    **({"earlier_errors": e.earlier_errors} if e.earlier_errors else {}),
                    **({"version": e.version} if e.version else {}),
                }
                for sys_id, e in sorted(self.runs.items())
            },
        }
        write_json_atomically(self.path, doc)
