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

Every mark is written through before `mark` returns, in time O(1) whatever the project's size: the state file
itself is rewritten only when the import opens and closes it (`compact`), and in between each run's latest
entry is its own small file in `<state name>.journal/` beside it (a fsynced rename on disk, one PUT on a
store). Readers (a resume, the other shards) take the state file and then its journal, whose entries are
newer. Rewriting the whole file per mark made an import of n runs write O(n^2) bytes: at 10^5 runs, ~10 MB
fsynced twice per run.

Where these files live is a `StateFile`: a name in a folder that is a BundleRoot. By default that is the
bundle itself, a local folder or the bundle's prefix on object storage alike, so the N machines of a sharded
import (the pods of a Kubernetes Job) see each other's states, reports and sync records through the bucket
alone. Every file is written whole by one writer (a rename on disk, one PUT on a store, which is atomic per
object); the locks are flocks on disk and conditional-write lock objects on a store (BundleRoot.lock).
`--state` names another place, a path or a URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmig.atomic import write_atomically
from nmig.errors import NmigError
from nmig.schema import local_path
from nmig.schema.format import BundleError
from nmig.schema.store import BundleRoot, LocalRoot, open_root
from nmig.sharding import SHARD_TAG, Shard, tagged_name, tagged_names

STATE_FORMAT = "nmig-import-state"
STATE_VERSION = 2
STARTED, IMPORTED, FAILED = "started", "imported", "failed"
JOURNAL_FORMAT = "nmig-import-state-entry"


def _slug(project: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", project.replace("/", "__"))


# A state file holds one entry per run; a report one line per item: far below this, and a bound on reading.
_MAX_STATE_BYTES = 1 << 31


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


class StateFile:
    """One file of an import's bookkeeping (its state, its report, a lock, a sync record): `name`, a
    "/"-separated relpath, in the folder `root` (a folder of this machine, or a prefix on object storage)."""

    def __init__(self, root: BundleRoot, name: str) -> None:
        self.root = root
        self.relpath = name

    @classmethod
    def at(cls, location: StateFile | Path | str, storage_options: dict[str, Any] | None = None) -> StateFile:
        """The file a path or URL names (a StateFile is returned as is)."""
        if isinstance(location, StateFile):
            return location
        local = local_path(location)
        if local is None:
            folder, _, name = str(location).rstrip("/").rpartition("/")
            if not name or folder.endswith(":/"):
                raise NmigError(f"{location}: name a file on the store (URL/FOLDER/NAME.json)")
            return cls(open_root(folder, storage_options), name)
        return cls(LocalRoot(local.parent), local.name)

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def local(self) -> Path | None:
        """The file on this machine; None on object storage."""
        joined = self.root.join(self.relpath)
        return joined if isinstance(joined, Path) else None

    def with_name(self, name: str) -> StateFile:
        folder = self.relpath.rpartition("/")[0]
        return StateFile(self.root, f"{folder}/{name}" if folder else name)

    def child(self, name: str) -> StateFile:
        """The file `name` in the folder this one names (a `.synced/` folder's records)."""
        return StateFile(self.root, f"{self.relpath}/{name}")

    def tagged(self, shard: Shard | None) -> StateFile:
        return self.with_name(tagged_name(self.name, shard))

    def tagged_siblings(self, trailer: str = "") -> list[StateFile]:
        """The files beside this one that are it tagged with any shard, followed by `trailer` (sharding.tagged_names)."""
        folder = self.relpath.rpartition("/")[0]
        files = [n for n, kind in self.root.entries(folder) if kind == "file"]
        return [self.with_name(n) for n in tagged_names(self.name, files, trailer)]

    def exists(self) -> bool:
        return self.root.kind(self.relpath) == "file"

    def read_text(self) -> str:
        """The whole file; OSError when it is absent or unreadable (UnicodeDecodeError, a ValueError, when not text)."""
        try:
            data = self.root.read_bytes(self.relpath, _MAX_STATE_BYTES)
        except BundleError as exc:
            raise OSError(str(exc)) from None
        if len(data) > _MAX_STATE_BYTES:
            raise OSError(f"{self} is larger than {_MAX_STATE_BYTES} bytes")
        return data.decode("utf-8")

    def write_json(self, doc: Any) -> None:
        """Replace the file whole: readers see the old content or the new, never half (fsynced on disk)."""
        self.root.write_bytes(self.relpath, _json_bytes(doc))

    def __str__(self) -> str:
        return str(self.root.join(self.relpath))

    def __repr__(self) -> str:
        return f"StateFile({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateFile) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def default_state_path(bundle_dir: Path | str, project: str, storage_options: dict[str, Any] | None = None) -> StateFile:
    """Inside the bundle, whether a local folder or a prefix on object storage: the shards of one import, on
    as many machines, find each other's state there."""
    return StateFile(open_root(bundle_dir, storage_options), f"import-state.{_slug(project)}.json")


def state_family(state_path: StateFile | Path) -> list[StateFile]:
    """The state files of one project's import next to an untagged `state_path`: itself and every shard's
    (those that exist)."""
    state = StateFile.at(state_path)
    return [p for p in [state, *state.tagged_siblings()] if p.exists()]


def write_json_atomically(path: Path, doc: Any) -> None:
    """A JSON file of this machine (verify's report): readers see the old content or the new, never half (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, _json_bytes(doc), durable=True)


@dataclass
class RunState:
    status: str
    target_run_id: str
    attempts: int = 0
    earlier_errors: list[dict[str, str]] | None = None
    version: str | None = None  # the bundle version (EntityBundle.version) last imported whole


class StateLock:
    """One `nmig import` per state file at a time: a second one would send the same runs twice over.

    `state_path` is the untagged state file; with a shard, that shard's lock is taken exclusively and the
    untagged one shared: the N shards of an import run at once, an unsharded import (which takes the untagged
    lock exclusively) runs while none of them does, and a shard of another N refuses while any of these runs.
    On disk the locks are flocks on `<state>.lock` files; on object storage, which has no shared locks, each
    holder creates its own lock object (BundleRoot.lock: a conditional write) and then looks for the others'."""

    def __init__(self, state_path: StateFile | Path, shard: Shard | None = None) -> None:
        self._base = StateFile.at(state_path)
        self._shard = shard
        self._held: list[Any] = []

    def _busy_unsharded(self) -> str:
        return f"an nmig import without --shard is using {self._base}; wait for it to finish"

    def _busy_other_n(self, lock_name: str) -> str | None:
        """The refusal for a shard's lock `lock_name` of another N than ours; None for one of ours."""
        match = SHARD_TAG.search(lock_name)
        if match is None or self._shard is None or int(match.group(2)) == self._shard.count:
            return None
        return (
            f"an nmig import --shard {match.group(1)}/{match.group(2)} is running on {self._base}; "
            f"every shard of one import needs the same N (here {self._shard.count})"
        )

    def __enter__(self) -> StateLock:
        try:
            local = self._base.local
            if local is not None:
                self._flocks(local)
            else:
                self._store_locks()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _flocks(self, base: Path) -> None:
        import fcntl

        base.parent.mkdir(parents=True, exist_ok=True)
        base_lock = base.with_name(base.name + ".lock")
        if self._shard is None:
            self._take(base_lock, fcntl.LOCK_EX, f"another nmig import is using {base} (with or without --shard); wait for it to finish")
            return
        self._take(base_lock, fcntl.LOCK_SH, self._busy_unsharded())
        own = base.with_name(tagged_name(base.name, self._shard))
        self._take(own.with_name(own.name + ".lock"), fcntl.LOCK_EX, f"another nmig import --shard {self._shard} is using {own}; wait for it to finish")
        # Holding ours first, then looking: of two shards of different N starting at once, at least one
        # sees the other.
        for other in self._base.tagged_siblings(".lock"):
            busy = self._busy_other_n(other.name)
            if busy is None:
                continue
            with open(base.with_name(other.name), "a+") as probe:
                try:
                    fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise NmigError(busy) from None

    def _store_locks(self) -> None:
        # Ours first, then the others' looked for (the store's listings are consistent after a write, as S3's
        # are): of two starting at once, at least one sees the other. A lock object exists only while held.
        base, root = self._base, self._base.root
        own = base.tagged(self._shard)
        what = "with or without --shard" if self._shard is None else f"--shard {self._shard}"
        lock = root.lock(own.relpath + ".lock", f"another nmig import {what} is using {own}; wait for it to finish")
        lock.__enter__()
        self._held.append(lock)
        if self._shard is None:
            shards = [SHARD_TAG.search(other.name) for other in base.tagged_siblings(".lock")]
            if shards:
                shown = ", ".join(f"{m.group(1)}/{m.group(2)}" for m in shards if m)
                raise NmigError(f"an nmig import --shard {shown} is using {base}; wait for it to finish")
            return
        if base.with_name(base.name + ".lock").exists():
            raise NmigError(self._busy_unsharded())
        for other in base.tagged_siblings(".lock"):
            busy = self._busy_other_n(other.name)
            if busy is not None:
                raise NmigError(busy)

    def _take(self, path: Path, mode: int, busy: str) -> None:
        import fcntl

        file = open(path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(file.fileno(), mode | fcntl.LOCK_NB)
        except OSError:
            file.close()
            raise NmigError(busy) from None
        self._held.append(file)

    def __exit__(self, *exc: Any) -> None:
        for held in reversed(self._held):
            if hasattr(held, "__exit__"):
                held.__exit__(None, None, None)  # a lock object: deleted
            else:
                held.close()  # closing releases the flock; the empty lock file stays (harmless)
        self._held = []


JOURNAL_TRAILER = ".journal"


def journal_folder(state_path: StateFile) -> StateFile:
    """`<state name>.journal/` beside a state file: one entry file per run marked since the last compaction."""
    return state_path.with_name(state_path.name + JOURNAL_TRAILER)


def _journal_entry(state_path: StateFile, sys_id: str) -> StateFile:
    # a legacy id may hold characters a file name should not: the entry names it inside, the name is a digest
    return journal_folder(state_path).child(hashlib.sha256(sys_id.encode("utf-8")).hexdigest()[:32] + ".json")


def _entry_json(entry: RunState) -> dict[str, Any]:
    return {
        "status": entry.status,
        "target_run_id": entry.target_run_id,
        "attempts": entry.attempts,
        **({"earlier_errors": entry.earlier_errors} if entry.earlier_errors else {}),
        **({"version": entry.version} if entry.version else {}),
    }


def _entry_from(entry: Any) -> RunState | None:
    if not isinstance(entry, dict) or entry.get("status") not in (STARTED, IMPORTED, FAILED):
        return None
    version = entry.get("version")
    return RunState(
        entry["status"], str(entry.get("target_run_id")), int(entry.get("attempts") or 0),
        entry.get("earlier_errors"), version if isinstance(version, str) else None,
    )


def _read_journal(path: StateFile, project: str, generation: str) -> dict[str, RunState]:
    """The entries of a state file's journal written for this `generation` of the file (an entry of an
    older file, deleted to start over, is not its); one of another project, or one that cannot be read (a
    copy cut short), is refused as the state file itself would be."""
    folder = journal_folder(path)
    if folder.root.kind(folder.relpath) != "folder":
        return {}
    runs: dict[str, RunState] = {}
    for name, kind in folder.root.entries(folder.relpath):
        if kind != "file" or not name.endswith(".json"):
            continue
        entry_file = folder.child(name)
        try:
            doc = json.loads(entry_file.read_text())
        except (OSError, ValueError) as exc:
            raise NmigError(f"state journal entry {entry_file} is unreadable ({exc}); move it away to start over") from None
        if not isinstance(doc, dict) or doc.get("format") != JOURNAL_FORMAT or doc.get("project") != project:
            raise NmigError(f"{entry_file} is not a journal entry of an nmig import state of project {project!r}")
        entry = _entry_from(doc.get("entry"))
        if isinstance(doc.get("sys_id"), str) and entry is not None and doc.get("generation") == generation:
            runs[doc["sys_id"]] = entry
    return runs


def _read_runs(path: StateFile, project: str) -> dict[str, RunState]:
    """The entries of a state file, its journal's over its own (none without the file: a journal is only
    ever written beside one)."""
    return _read_state(path, project)[0]


def _read_state(path: StateFile, project: str) -> tuple[dict[str, RunState], str | None]:
    """(entries, the file's generation) of a state file and its journal; ({}, None) when there is no file."""
    if not path.exists():
        return {}, None
    runs, generation = _read_state_file(path, project)
    if generation is not None:
        runs.update(_read_journal(path, project, generation))
    return runs, generation


def _read_state_file(path: StateFile, project: str) -> tuple[dict[str, RunState], str | None]:
    try:
        doc = json.loads(path.read_text())
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
        state = _entry_from(entry)
        if state is not None:
            runs[sys_id] = state
    generation = doc.get("generation")
    return runs, generation if isinstance(generation, str) else None


class ImportState:
    """Thread-safe; every change is written through to disk before the call returns.

    `others`: the state files of the other shards of this import (state_family), read once. Where this file
    says nothing of a run, or another says it is imported, the other file's entry counts (`status`,
    `version`, `home`: an imported entry first, then the latest version). Only `path` is written."""

    def __init__(
        self, path: StateFile | Path, project: str, bundle_dir: Path | str, others: list[StateFile] | list[Path] | None = None,
    ) -> None:
        self.path = path = StateFile.at(path)
        self.project = project
        self._lock = threading.Lock()
        self.runs, generation = _read_state(path, project)
        # Names this file among the files ever written at its place: its journal entries carry it, so the
        # entries of a file deleted to start over are never taken for this one's.
        self._generation = generation or uuid.uuid4().hex
        self._journaled = False  # an entry was written to the journal since the last compaction
        self._written = generation is not None
        self.others = [p for p in map(StateFile.at, others or []) if p != path]
        self.elsewhere: dict[str, tuple[RunState, StateFile]] = {}  # legacy id -> its entry in the other files
        for other in self.others:
            for sys_id, entry in _read_runs(other, project).items():
                kept = self.elsewhere.get(sys_id)
                if kept is None or (kept[0].status != IMPORTED and entry.status == IMPORTED):
                    self.elsewhere[sys_id] = (entry, other)
        local = local_path(bundle_dir)
        self._bundle = str(local.resolve()) if local is not None else str(bundle_dir)
        journal = journal_folder(path)
        if self.runs or journal.root.kind(journal.relpath) == "folder":
            self.compact()  # what an interrupted import journaled goes into the file, and the journal is emptied

    def _entry(self, sys_id: str) -> tuple[RunState, StateFile] | None:
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

    def home(self, sys_id: str) -> StateFile:
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
            if not self._written:
                self._save()  # the file exists as soon as anything is marked: the other shards look for it
            else:
                _journal_entry(self.path, sys_id).write_json({
                    "format": JOURNAL_FORMAT, "project": self.project, "generation": self._generation,
                    "sys_id": sys_id, "entry": _entry_json(entry),
                })
                self._journaled = True

    def compact(self) -> None:
        """Write the state file whole with every entry, then empty its journal (an entry left by a crash in
        between says what the file says). Called when the import opens the state and when it ends."""
        with self._lock:
            self._save()
            folder = journal_folder(self.path)
            if folder.root.kind(folder.relpath) == "folder":
                folder.root.delete(folder.relpath)
            self._journaled = False

    def finish(self) -> None:
        """At the end of an import: compact when anything was journaled. A failure here loses nothing (the
        journal is read next time), so it is not raised over whatever ended the import."""
        if self._journaled:
            try:
                self.compact()
            except (OSError, NmigError, BundleError):
                pass

    def _save(self) -> None:
        doc = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "project": self.project,
            "bundle": self._bundle,
            "generation": self._generation,
            "runs": {sys_id: _entry_json(e) for sys_id, e in sorted(self.runs.items())},
        }
        self.path.write_json(doc)
        self._written = True
