"""The shard rules on plain data and plain files: the import's partition by experiment, the tagged file names,
the state files of several shards read together, the locks that keep shards of another N (or none) out, the
reports read together by verify, and an export's shards sharing one bundle folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmig.errors import NmigError
from nmig.exporter.export import merge_shard_info
from nmig.importer.partition import partition_keys
from nmig.importer.report import read_items, report_path_for
from nmig.importer.state import FAILED, IMPORTED, STARTED, ImportState, StateLock, state_family
from nmig.schema.writer import clean_partial, partial_owner
from nmig.sharding import Shard, tagged, tagged_siblings


def test_runs_of_one_experiment_share_a_key_plain_runs_go_by_id() -> None:
    keys = partition_keys([
        ("VIS-1", "exp-a", "VIS-1"), ("VIS-2", "exp-a", "VIS-2"), ("VIS-3", "exp-b", "VIS-3"),
        ("VIS-4", None, "VIS-4"), ("VIS-5", None, "VIS-5"),
    ])
    assert keys == {"VIS-1": "exp-a", "VIS-2": "exp-a", "VIS-3": "exp-b", "VIS-4": "VIS-4", "VIS-5": "VIS-5"}


def test_runs_whose_3x_ids_meet_stay_together() -> None:
    # VIS-7 (plain) and VIS-8 (exp-c) have one custom run id; VIS-9 joins exp-c too, VIS-10 meets VIS-11
    keys = partition_keys([
        ("VIS-7", None, "same"), ("VIS-8", "exp-c", "same"), ("VIS-9", "exp-c", "VIS-9"),
        ("VIS-10", None, "x"), ("VIS-11", None, "x"), ("VIS-12", "exp-d", "y"), ("VIS-13", "exp-e", "y"),
    ])
    assert keys["VIS-7"] == keys["VIS-8"] == keys["VIS-9"] == "exp-c"
    assert keys["VIS-10"] == keys["VIS-11"] == "VIS-10"
    assert keys["VIS-12"] == keys["VIS-13"] == "exp-d"  # two experiments joined: the smaller name


def test_every_run_lands_in_exactly_one_shard_and_experiments_are_not_split() -> None:
    members = [(f"VIS-{n}", f"exp-{n % 7}" if n % 3 else None, f"VIS-{n}") for n in range(1, 300)]
    keys = partition_keys(members)
    shards = [Shard(i, 4) for i in range(1, 5)]
    owner = {sys_id: [s.index for s in shards if s.holds(keys[sys_id])] for sys_id, _, _ in members}
    assert all(len(o) == 1 for o in owner.values())
    by_experiment: dict[str, set[int]] = {}
    for sys_id, experiment, _ in members:
        if experiment:
            by_experiment.setdefault(experiment, set()).add(owner[sys_id][0])
    assert len(by_experiment) == 7 and all(len(s) == 1 for s in by_experiment.values())
    assert len({o[0] for sys_id, e, _ in members if e is None for o in [owner[sys_id]]}) == 4  # plain runs spread


def test_tagged_names(tmp_path: Path) -> None:
    state = tmp_path / "import-state.demo__vision.json"
    assert tagged(state, None) == state
    assert tagged(state, Shard(1, 4)).name == "import-state.demo__vision.shard-1-of-4.json"
    assert report_path_for(tagged(state, Shard(1, 4))).name == "import-report.demo__vision.shard-1-of-4.json"
    assert report_path_for(tagged(tmp_path / "s.json", Shard(2, 3))).name == "s.report.shard-2-of-3.json"
    assert report_path_for(tmp_path / "s.json").name == "s.report.json"
    for name in ("import-state.demo__vision.shard-2-of-4.json", "import-state.demo__vision.shard-1-of-2.json",
                 "import-state.demo__vision.shard-x-of-2.json", "import-state.demo__other.shard-1-of-2.json"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in tagged_siblings(state)] == [
        "import-state.demo__vision.shard-1-of-2.json", "import-state.demo__vision.shard-2-of-4.json"
    ]


def _state_doc(runs: dict[str, str]) -> str:
    return json.dumps({"format": "nmig-import-state", "format_version": 2, "project": "demo/vision",
                       "runs": {r: {"status": s, "target_run_id": r} for r, s in runs.items()}})


def test_a_run_imported_under_any_shard_state_is_imported(tmp_path: Path) -> None:
    base = tmp_path / "import-state.demo__vision.json"
    tagged(base, Shard(1, 2)).write_text(_state_doc({"A": IMPORTED, "B": STARTED, "C": FAILED}))
    tagged(base, Shard(2, 2)).write_text(_state_doc({"D": IMPORTED, "C": IMPORTED}))
    assert [s.local for s in state_family(base)] == [tagged(base, Shard(1, 2)), tagged(base, Shard(2, 2))]
    # an import without --shard afterwards
    state = ImportState(base, "demo/vision", tmp_path, state_family(base))
    assert [state.status(r) for r in "ABCDE"] == [IMPORTED, STARTED, IMPORTED, IMPORTED, None]
    state.mark("E", STARTED, "E")
    written = json.loads(base.read_text())["runs"]
    assert list(written) == ["E"]  # only its own file is written
    # a shard of another N reads the unsharded file too
    other = ImportState(tagged(base, Shard(1, 3)), "demo/vision", tmp_path, state_family(base))
    assert other.status("E") == STARTED and other.status("A") == IMPORTED


def test_locks_keep_unsharded_and_other_n_imports_out(tmp_path: Path) -> None:
    base = tmp_path / "import-state.demo__vision.json"
    with StateLock(base, Shard(1, 4)), StateLock(base, Shard(2, 4)):
        with pytest.raises(NmigError, match="--shard 1/4 is using"):
            StateLock(base, Shard(1, 4)).__enter__()
        with pytest.raises(NmigError, match=r"another nmig import is using .* \(with or without --shard\)"):
            StateLock(base).__enter__()
        with pytest.raises(NmigError, match="same N"):
            StateLock(base, Shard(1, 2)).__enter__()
    with StateLock(base):
        with pytest.raises(NmigError, match="without --shard"):
            StateLock(base, Shard(3, 4)).__enter__()
    with StateLock(base, Shard(1, 2)):  # all released: another N may run now
        pass


def _report(path: Path, finished: str, imported: list[str], items: list[tuple[str, str]]) -> None:
    path.write_text(json.dumps({
        "format": "nmig-import-report", "project": "demo/vision", "finished_at": finished,
        "runs": {"imported": imported}, "items": [{"run": r, "path": "p", "case": c, "detail": "d"} for r, c in items],
    }))


def test_verify_reads_every_shards_report(tmp_path: Path) -> None:
    base = tmp_path / "import-report.demo__vision.json"
    _report(tagged(base, Shard(1, 2)), "2024-01-01T00:00:00", ["A"], [("A", "path_shortened"), ("B", "failed")])
    _report(tagged(base, Shard(2, 2)), "2024-01-01T00:00:01", ["C"], [("C", "path_shortened")])
    # B failed under shard 1, then a later import without --shard imported it, repeating A's items
    _report(base, "2024-01-02T00:00:00", ["B"], [("A", "path_shortened")])
    items = read_items(base)
    assert {run: [i["case"] for i in found] for run, found in items.adjusted.items()} == {"A": ["path_shortened"], "C": ["path_shortened"]}
    assert items.problems == {}  # B's failure is not what the report that imported it says


def test_export_shards_share_export_json() -> None:
    def info(started: str, finished: str | None) -> dict:
        return {"source": {}, "selection": {"query": None}, "started_at": started, "finished_at": finished}

    one = merge_shard_info(None, info("t2", None), Shard(2, 3))
    assert one["selection"]["shard"] == "2/3" and one["finished_at"] is None
    two = merge_shard_info(one, info("t1", "t5"), Shard(1, 3))
    two = merge_shard_info(two, info("t2", "t4"), Shard(2, 3))
    assert two["selection"]["shard"] == "1/3,2/3" and two["started_at"] == "t1" and two["finished_at"] is None
    three = merge_shard_info(two, info("t3", "t6"), Shard(3, 3))
    assert list(three["shards"]) == ["1/3", "2/3", "3/3"] and three["finished_at"] == "t6"
    assert list(merge_shard_info(three, info("t9", None), Shard(1, 2))["shards"]) == ["1/2"]  # another N starts over


def test_an_export_shard_cleans_only_its_own_work_in_progress(tmp_path: Path) -> None:
    partial = tmp_path / ".partial"
    names = ["run-VIS-1-0123456789ab", "run-VIS-1-0123456789ab.spill", "model_version-CLS-M-2-0123456789ab.old",
             "run-VIS-2-aaaaaaaaaaaa", "tmp_download", "model-CLS-M-bbbbbbbbbbbb"]
    for name in names:
        (partial / name).mkdir(parents=True)
    assert partial_owner("model_version-CLS-M-2-0123456789ab.old") == ("model_version", "CLS-M-2")
    assert partial_owner("run-VIS-1-0123456789ab.spill") == ("run", "VIS-1")
    assert partial_owner("tmp_download") is None
    clean_partial(tmp_path, only=lambda kind, sys_id: sys_id in ("VIS-1", "CLS-M-2"))
    assert sorted(p.name for p in partial.iterdir()) == ["model-CLS-M-bbbbbbbbbbbb", "run-VIS-2-aaaaaaaaaaaa", "tmp_download"]
    clean_partial(tmp_path)
    assert not partial.exists()
