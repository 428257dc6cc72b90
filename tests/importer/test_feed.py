"""`run_import` fed with runs as their bundles complete (what `nmig migrate` does): the feed is asked for more
while workers are busy, each run is imported once into the same state file and report."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo


def _points(n: int) -> Any:
    def fill(w: Any) -> None:
        steps = np.arange(float(n))
        w.add_float_points("m", steps, steps * 0.5, T0_MS + np.arange(n))

    return fill


class _StagedFeed:
    """Yields FEED-1 first; FEED-2 (with FEED-1 again and an id that is not in the bundle) only once FEED-1 is
    being imported; then says it is finished."""

    def __init__(self) -> None:
        self.first_busy = threading.Event()  # set by FEED-1's worker, from inside its replay
        self.second_given = threading.Event()
        self.polls = 0
        self.polls_while_busy = 0

    def poll(self) -> tuple[list[str], bool]:
        self.polls += 1
        if self.polls == 1:
            return ["FEED-1"], False
        if self.second_given.is_set():
            return [], True
        if self.first_busy.is_set():
            self.polls_while_busy += 1
            self.second_given.set()
            return ["FEED-2", "FEED-1", "NOPE-1"], False
        return [], False


def test_runs_arriving_while_others_import_are_imported_once(
    neptune3: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nq: Any
) -> None:
    from nmig.importer import ImportOptions, run_import
    from nmig.importer.state import default_state_path

    monkeypatch.chdir(tmp_path)
    project = "demo/fed"
    bundle = write_bundle(tmp_path / "b", {"FEED-1": _points(3000), "FEED-2": _points(500)})
    feed = _StagedFeed()

    def progress(points: int) -> None:
        # FEED-1's worker holds on until the feed handed out FEED-2: that happens only if the importer asks
        # the feed again while a worker is busy (a batch-at-a-time importer would wait here in vain)
        if not feed.first_busy.is_set():
            feed.first_busy.set()
            feed.second_given.wait(timeout=30)

    options = ImportOptions(bundle_dir=bundle, project=project, api_token=neptune3.api_token, quiet=True, max_workers=2)
    result = run_import(options, progress=progress, feed=feed)
    assert feed.second_given.is_set() and feed.polls_while_busy == 1
    assert sorted(result.imported) == ["FEED-1", "FEED-2"] and result.already == []
    assert result.refused == ["NOPE-1"]
    with pytest.raises(Exception, match="NOPE-1"):
        result.raise_for_failures()

    doc = report(bundle)
    assert sorted(doc["runs"]["imported"]) == ["FEED-1", "FEED-2"] and doc["runs"]["refused"] == ["NOPE-1"]
    assert "no run 'NOPE-1'" in items(doc, "refused", "NOPE-1")[0]["detail"]
    assert sorted(doc["targets"]) == ["FEED-1", "FEED-2"]
    assert default_state_path(bundle, project).exists()
    for run_id, n in (("FEED-1", 3000), ("FEED-2", 500)):
        got = nq.fetch_metrics(project=project, runs=[run_id], attributes=["m"]).reset_index()
        assert got["step"].tolist() == list(np.arange(float(n)))  # every point, once

    # the same state file on a plain re-run: nothing imported twice
    again = run_import(ImportOptions(bundle_dir=bundle, project=project, api_token=neptune3.api_token, quiet=True))
    assert again.imported == [] and sorted(again.already) == ["FEED-1", "FEED-2"]


def test_a_feed_excludes_a_selection_and_a_dry_run(tmp_path: Path) -> None:
    from nmig.importer import ImportOptions, WholeBundle, run_import

    bundle = write_bundle(tmp_path / "b", {"X-1": _points(2)})
    for extra in ({"runs": ["X-1"]}, {"dry_run": True}):
        with pytest.raises(ValueError, match="feed"):
            run_import(ImportOptions(bundle_dir=bundle, project="demo/x", api_token=None, **extra), feed=WholeBundle(["X-1"]))
