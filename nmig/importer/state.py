"""The import state file: which runs of a bundle are imported into which project, written atomically.

A run is "started" before anything is sent for it, and "imported" only after the client confirmed that the
service processed everything sent and no error came back. A run found "started" or "failed" on a re-run is
resumed (the target is asked what it already holds). One state file per target project.

Format 2 also records, per imported run, the `version` of its bundle that was imported (EntityBundle.version)
and, beside the state file in `<state stem>.synced/<sys_id>.json`, what was written (sync.SyncRecord): a run
whose bundle has another version (after `nmig export --update`) is re-synced (the cut-over). Format 1 files
are read as they are: their imported runs have no recorded version, so each is re-synced once.
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


class StateLock:
    """One `nmig import` per state file at a time: a second one would send the same runs twice over."""

    def __init__(self, state_path: Path) -> None:
        self._path = state_path.with_name(state_path.name + ".lock")
        self._file: Any = None

    def __enter__(self) -> StateLock:
        import fcntl

        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise NmigError(f"another nmig import is using {self._path.parent / self._path.name[:-5]}; wait for it to finish") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()  # closing releases the lock; the empty lock file stays (harmless)


class ImportState:
    """Thread-safe; every change is written through to disk before the call returns."""

    def __init__(self, path: Path, project: str, bundle_dir: Path | str) -> None:
        self.path = path
        self.project = project
        self._lock = threading.Lock()
        self.runs: dict[str, RunState] = {}
        if path.exists():
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
            for sys_id, entry in (doc.get("runs") or {}).items():
                if isinstance(entry, dict) and entry.get("status") in (STARTED, IMPORTED, FAILED):
                    version = entry.get("version")
                    self.runs[sys_id] = RunState(
                        entry["status"], str(entry.get("target_run_id")), int(entry.get("attempts") or 0),
                        entry.get("earlier_errors"), version if isinstance(version, str) else None,
                    )
        local = local_path(bundle_dir)
        self._bundle = str(local.resolve()) if local is not None else str(bundle_dir)

    def status(self, sys_id: str) -> str | None:
        entry = self.runs.get(sys_id)
        return entry.status if entry else None

    def version(self, sys_id: str) -> str | None:
        """The bundle version of the run that was last imported whole (None: never, or by format 1)."""
        entry = self.runs.get(sys_id)
        return entry.version if entry else None

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
