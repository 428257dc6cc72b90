"""The cut-over: bringing a run that an earlier `nmig import` imported up to date with a newer export of it.

After `nmig export --update` re-exported a run (it changed in 2.x), its bundle has another version
(EntityBundle.version) than the one the state file says was imported, and the import re-syncs it: the target
is asked where each series ends (as for a resumed run) and only the points after that are sent, exactly once;
configs are written again (they overwrite), tags removed in 2.x are removed, files whose content changed are
uploaded again. What 3.x cannot change is reported per path: earlier points of a series altered or removed in
2.x (`history_changed`), and configs, files and series removed in 2.x (`not_removable`: 3.x has no operation
that deletes an attribute; the ingest protobuf's UpdateRunSnapshot only assigns values and modifies sets,
proto/neptune_pb/ingest/v1/common.proto 245-263).

To tell what changed, each import leaves a `SyncRecord` of what it wrote beside the state file
(`<state stem>.synced/<sys_id>.json`, written before the run is marked imported): the config paths, tags,
files (by content hash) and, per series, where it ended and a digest of its points. The digest covers every
planned point up to the series' last step (micro-step, timestamp as sent, value), one point after another, so it
does not depend on how the bundle was paged: the prefix of a newer export up to the same step has the same
digest exactly when 2.x did not change those points.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nmig.importer.limits import step_of_micros
from nmig.importer.report import Event
from nmig.importer.state import StateFile

SYNC_FORMAT = "nmig-import-synced"
SYNC_VERSION = 1
_NONE = 0xFFFFFFFF  # the length written for a missing string value (an empty one is 0)


def synced_folder(state_path: StateFile | Path) -> StateFile:
    """Where the sync records of a state file live: `<state stem>.synced/` beside it (on the store with it)."""
    state = StateFile.at(state_path)
    name = state.name
    return state.with_name((name[: -len(".json")] if name.endswith(".json") else name) + ".synced")


@dataclass(frozen=True)
class SeriesMark:
    """Where one series ended when it was imported: its last micro-step, how many points it then had in 3.x,
    and the digest of those points."""

    last: int
    points: int
    digest: str


@dataclass
class SyncRecord:
    """What an import wrote into a run (3.x paths), for the next re-sync of it."""

    version: str | None
    configs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group_tags: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # 3.x path -> content hash
    series: dict[str, SeriesMark] = field(default_factory=dict)  # 3.x path -> mark
    sources: dict[str, str] = field(default_factory=dict)  # 3.x path -> legacy path (for the report's words)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SYNC_FORMAT,
            "format_version": SYNC_VERSION,
            "version": self.version,
            "configs": sorted(self.configs),
            "tags": sorted(self.tags),
            "group_tags": sorted(self.group_tags),
            "files": dict(sorted(self.files.items())),
            "series": {p: [m.last, m.points, m.digest] for p, m in sorted(self.series.items())},
            "sources": dict(sorted(self.sources.items())),
        }


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def read_record(folder: StateFile | Path, sys_id: str) -> SyncRecord | None:
    """The record of a run's last import, None when there is none (or it is unreadable: the run is then
    re-synced without the history check, as one imported by a format-1 state file)."""
    try:
        doc = json.loads(_record(folder, sys_id).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != SYNC_FORMAT:
        return None
    series: dict[str, SeriesMark] = {}
    for path, mark in (doc.get("series") or {}).items():
        if isinstance(mark, list) and len(mark) == 3 and all(isinstance(v, int) for v in mark[:2]) and isinstance(mark[2], str):
            series[str(path)] = SeriesMark(mark[0], mark[1], mark[2])
    files = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    sources = doc.get("sources") if isinstance(doc.get("sources"), dict) else {}
    return SyncRecord(
        version=doc.get("version") if isinstance(doc.get("version"), str) else None,
        configs=_strings(doc.get("configs")),
        tags=_strings(doc.get("tags")),
        group_tags=_strings(doc.get("group_tags")),
        files={str(k): str(v) for k, v in files.items()},
        series=series,
        sources={str(k): str(v) for k, v in sources.items()},
    )


def _record(folder: StateFile | Path, sys_id: str) -> StateFile:
    # sys_id is a legacy id from the bundle: one plain name (checked by the store's relpaths)
    return StateFile.at(folder).child(f"{sys_id}.json")


def write_record(folder: StateFile | Path, sys_id: str, record: SyncRecord) -> None:
    _record(folder, sys_id).write_json(record.to_json())


def point_bytes(micros: np.ndarray, stamps: np.ndarray, values: np.ndarray | Sequence[str | None]) -> bytes:
    """Points serialised one after another (micro-step, timestamp, value), for a digest that does not depend
    on how they were batched. Float values as their IEEE bits (NaN payloads included), strings length-prefixed."""
    if isinstance(values, np.ndarray):
        rows = np.empty(len(micros), dtype=[("m", "<i8"), ("t", "<i8"), ("v", "<f8")])
        rows["m"], rows["t"], rows["v"] = micros, stamps, values
        return rows.tobytes()
    parts = []
    for micro, stamp, value in zip(micros.tolist(), stamps.tolist(), values, strict=True):
        data = b"" if value is None else value.encode("utf-8", "surrogatepass")
        parts.append(struct.pack("<qqI", micro, stamp, _NONE if value is None else len(data)) + data)
    return b"".join(parts)


class SeriesDigests:
    """The digests of one run's series as the replay streams them: of every planned point (the new record),
    and of the points up to where the previous import ended (compared with that record's)."""

    def __init__(self, previous: SyncRecord | None) -> None:
        self.previous = previous.series if previous is not None else {}
        self._all: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._prefix: dict[str, Any] = {}
        self._prefix_counts: dict[str, int] = {}

    def add(self, target: str, micros: np.ndarray, stamps: np.ndarray, values: np.ndarray | Sequence[str | None]) -> None:
        """Planned points of a series (in order; what the target holds or is sent, not the points the 3.x
        limits leave out)."""
        if not len(micros):
            return
        self._all.setdefault(target, hashlib.sha256()).update(point_bytes(micros, stamps, values))
        self._counts[target] = self._counts.get(target, 0) + len(micros)
        mark = self.previous.get(target)
        if mark is None:
            return
        upto = int(np.searchsorted(micros, mark.last, side="right"))  # planned micro-steps increase
        if upto:
            head = values[:upto]
            self._prefix.setdefault(target, hashlib.sha256()).update(point_bytes(micros[:upto], stamps[:upto], head))
            self._prefix_counts[target] = self._prefix_counts.get(target, 0) + upto

    def marks(self, last_micros: dict[str, int]) -> dict[str, SeriesMark]:
        """{3.x path: its mark} for the new record, given where each series ends."""
        return {
            target: SeriesMark(last_micros[target], self._counts[target], self._all[target].hexdigest()[:32])
            for target in self._all
            if target in last_micros
        }

    def changed_history(self) -> dict[str, tuple[SeriesMark, int]]:
        """{3.x path: (its previous mark, the points the bundle now has up to that mark's step)} of the series
        whose points up to where the previous import ended are not those it imported."""
        changed = {}
        for target, mark in self.previous.items():
            prefix = self._prefix.get(target)
            count = self._prefix_counts.get(target, 0)
            if prefix is None or count != mark.points or prefix.hexdigest()[:32] != mark.digest:
                changed[target] = (mark, count)
        return changed


def removed_since(previous: SyncRecord, configs: Sequence[str], files: Sequence[str], series: Sequence[str]) -> dict[str, str]:
    """{3.x path: what it was} of the configs, files and series the previous import wrote that the bundle no
    longer has (removed in 2.x): 3.x cannot delete them."""
    gone: dict[str, str] = {}
    for what, before, now in (("config", previous.configs, configs), ("file", previous.files, files),
                              ("series", previous.series, series)):
        for path in sorted(set(before) - set(now)):
            gone[path] = what
    return gone


def delta_events(sys_id: str, previous: SyncRecord, digests: SeriesDigests, removed: dict[str, str],
                 sources: dict[str, str]) -> list[Event]:
    """The report's items for what a re-sync could not bring into 3.x."""
    events = []
    for target, (mark, now) in sorted(digests.changed_history().items()):
        if target in removed:
            continue  # the whole series went: reported as not removable below
        legacy = sources.get(target) or previous.sources.get(target, target)
        events.append(Event(
            sys_id, legacy, "history_changed",
            f"{target}: of the {mark.points} point(s) imported before (up to step {step_of_micros(mark.last)!r}), "
            f"the bundle now has {now} and they are not all the same: 2.x changed or removed earlier points, which "
            "3.x cannot change (only points after the series' last step were sent); the bundle holds the new history",
        ))
    for target, what in sorted(removed.items()):
        legacy = previous.sources.get(target, target)
        events.append(Event(
            sys_id, legacy, "not_removable",
            f"{target}: the {what} was removed in 2.x since the last import; 3.x has no way to delete an "
            "attribute, so it stays in the target run",
        ))
    return events
