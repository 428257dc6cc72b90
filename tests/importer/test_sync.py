"""The cut-over's bookkeeping on plain data: point digests do not depend on batching, a changed or removed
earlier point is found per series, removed items are listed, and state files of format 1 still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmig.errors import NmigError
from nmig.importer.state import IMPORTED, STARTED, ImportState
from nmig.importer.sync import (
    SeriesDigests,
    SyncRecord,
    read_record,
    removed_since,
    synced_folder,
    write_record,
)

MICROS = np.arange(0, 10_000_000, 1_000_000, dtype=np.int64)  # steps 0..9
STAMPS = 1_700_000_000_000 + np.arange(10, dtype=np.int64)


def _digests(values: np.ndarray | list[str | None], cuts: list[int], previous: SyncRecord | None = None) -> SeriesDigests:
    digests = SeriesDigests(previous)
    edges = [0, *cuts, len(MICROS)]
    for start, end in zip(edges, edges[1:], strict=False):
        digests.add("m", MICROS[start:end], STAMPS[start:end], values[start:end])
    return digests


@pytest.mark.parametrize("values", [np.linspace(0, 1, 10), [f"v{i}" for i in range(9)] + [None]])
def test_a_digest_does_not_depend_on_how_the_points_were_batched(values: np.ndarray | list[str | None]) -> None:
    whole = _digests(values, []).marks({"m": int(MICROS[-1])})
    assert _digests(values, [3, 7]).marks({"m": int(MICROS[-1])}) == whole
    assert whole["m"].points == 10


def test_the_prefix_up_to_the_previous_last_step_is_compared() -> None:
    values = np.linspace(0, 1, 10)
    first = SeriesDigests(None)
    first.add("m", MICROS[:6], STAMPS[:6], values[:6])  # imported up to step 5
    previous = SyncRecord("v1", series=first.marks({"m": int(MICROS[5])}))
    assert _digests(values, [4], previous).changed_history() == {}  # only points after step 5 are new
    altered = values.copy()
    altered[2] = 7.0
    changed = _digests(altered, [4], previous).changed_history()
    assert list(changed) == ["m"] and changed["m"][1] == 6
    shorter = SeriesDigests(previous)  # 2.x dropped the points after step 3
    shorter.add("m", MICROS[:4], STAMPS[:4], values[:4])
    assert shorter.changed_history()["m"][1] == 4


def test_removed_items_and_the_record_round_trip(tmp_path: Path) -> None:
    record = SyncRecord("v1", configs=["a", "b"], tags=["t"], files={"f": "h"}, series=_digests(np.zeros(10), []).marks({"m": 9_000_000}))
    write_record(tmp_path, "RUN-1", record)
    assert read_record(tmp_path, "RUN-1") == record
    assert read_record(tmp_path, "RUN-2") is None
    assert removed_since(record, ["a"], [], ["m"]) == {"b": "config", "f": "file"}
    assert synced_folder(tmp_path / "import-state.ws__p.json").local == tmp_path / "import-state.ws__p.synced"


def test_a_format_1_state_file_reads_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "import-state.ws__p.json"
    runs = {"R-1": {"status": IMPORTED, "target_run_id": "R-1", "attempts": 1}}
    path.write_text(json.dumps({"format": "nmig-import-state", "format_version": 1, "project": "ws/p", "runs": runs}))
    state = ImportState(path, "ws/p", tmp_path)
    assert state.status("R-1") == IMPORTED and state.version("R-1") is None  # re-synced once
    state.mark("R-1", STARTED, "R-1")
    state.mark("R-1", IMPORTED, "R-1", version="abc")
    state.mark("R-1", STARTED, "R-1")  # a later re-sync keeps the version it started from
    assert ImportState(path, "ws/p", tmp_path).version("R-1") == "abc"  # read through the journal, then compacted
    saved = json.loads(path.read_text())
    assert saved["format_version"] == 2 and saved["runs"]["R-1"]["version"] == "abc"
    path.write_text(json.dumps({**saved, "format_version": 3}))
    with pytest.raises(NmigError, match="newer than this nmig reads"):
        ImportState(path, "ws/p", tmp_path)
