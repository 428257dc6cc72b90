"""IngestEngine on plain protobuf data: a request is applied entirely or not at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Step, UpdateRunSnapshots
from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from nmig.emulators.neptune3.ingest import IngestEngine
from nmig.emulators.neptune3.store import DB_FILE, Store, StoreLocked


class _CrashBeforeCommit:
    """The engine's before_commit test hook: when armed, fails at the very end of applying a request, after
    all its rows were written in the transaction."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> None:
        if self.armed:
            raise OSError("disk vanished")


def _batch(first_step: int, steps: int) -> RunOperation:
    batch = UpdateRunSnapshots()
    for step in range(first_step, first_step + steps):
        snapshot = batch.snapshots.add(step=Step(whole=step))
        snapshot.timestamp.seconds = 1_700_000_000 + step
        snapshot.append["m/a"].float64 = step / 2
        snapshot.append["m/b"].float64 = -step
        snapshot.assign["c/last"].int64 = step
    return RunOperation(project="demo/p", run_id="r", update_batch=batch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store in tmp_path, closed when the test ends."""
    opened = Store(tmp_path)
    yield opened
    opened.close()


def test_a_failing_request_leaves_nothing_behind_and_can_be_sent_again(tmp_path: Path, store: Store) -> None:
    project = store.create_project("demo", "p")
    crash = _CrashBeforeCommit()
    engine = IngestEngine(store, before_commit=crash)
    engine.apply(project, RunOperation(project="demo/p", run_id="r", create=CreateRun(family="r")), "create")
    engine.apply(project, _batch(0, 10), "ok-1")
    crash.armed = True
    with pytest.raises(OSError):
        engine.apply(project, _batch(10, 10), "lost")
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("SELECT COUNT(*) FROM points").fetchone() == (20,)
    assert db.execute("SELECT value FROM attributes WHERE path = 'c/last'").fetchone() == (9,)
    assert db.execute("SELECT COUNT(*) FROM requests WHERE request_id = 'lost'").fetchone() == (0,)
    # The client sends the same data again: accepted in full, as if the failed attempt never happened.
    crash.armed = False
    status = engine.apply(project, _batch(10, 10), "retry")
    assert [(c.code, c.count) for c in status.code_by_count] == [(0, 30)]
    steps = [s for (s,) in db.execute(
        "SELECT p.step_whole FROM points p JOIN attributes a USING (attr_pk) WHERE a.path = 'm/a' ORDER BY 1")]
    assert steps == list(range(20))
    assert db.execute(
        "SELECT point_count, last_step_whole, agg_min, agg_max, agg_sum FROM attributes WHERE path = 'm/b'"
    ).fetchone() == (20, 19, -19.0, 0.0, float(-sum(range(20))))


def test_one_process_owns_a_data_folder(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        with pytest.raises(StoreLocked):
            Store(tmp_path)
    finally:
        store.close()
    Store(tmp_path).close()  # free again once closed


def test_steps_keep_whole_and_micro_parts_and_previews_give_way(tmp_path: Path, store: Store) -> None:
    project = store.create_project("demo", "p")
    engine = IngestEngine(store)
    engine.apply(project, RunOperation(project="demo/p", run_id="r", create=CreateRun()), "create")
    batch = UpdateRunSnapshots()
    for value, (whole, micro, preview) in enumerate([(1, 999999, False), (2, 1, True), (2, 1, False), (2, 2, True)]):
        snapshot = batch.snapshots.add(step=Step(whole=whole, micro=micro))
        snapshot.timestamp.seconds = 1_700_000_000
        if preview:
            snapshot.preview.is_preview = True
            snapshot.preview.completion_ratio = 0.5
        snapshot.append["m/x"].float64 = float(value)
    bad = batch.snapshots.add(step=Step(whole=3, micro=1_000_000))
    bad.append["m/x"].float64 = 1.0
    status = engine.apply(project, RunOperation(project="demo/p", run_id="r", update_batch=batch), "u")
    assert sorted((c.detail, c.count) for c in status.code_by_count) == [(IngestCode.OK, 4), (IngestCode.SERIES_STEP_INVALID, 1)]
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("SELECT step_whole, step_micro, value, preview FROM points ORDER BY 1, 2").fetchall() == [
        (1, 999999, 0.0, 0), (2, 1, 2.0, 0), (2, 2, 3.0, 1)]  # the committed 2.0 replaced preview 1.0


def test_connections_of_finished_threads_are_closed(store: Store) -> None:
    import os
    import threading

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    store.connection()
    before = open_files()
    for _ in range(30):  # the HTTP server runs each client connection on a thread of its own
        worker = threading.Thread(target=lambda: store.connection().execute("SELECT 1").fetchall())
        worker.start()
        worker.join()
    assert open_files() <= before + 4


def test_the_command_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.neptune3 import serve_neptune3

    runner = CliRunner()
    result = runner.invoke(main, ["emulate", "neptune3", "--fail-rate", "0.7", "--throttle-rate", "0.7"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "nmig: error: cannot start the neptune3 emulator: fail_rate + throttle_rate must not exceed 1"
    ]
    with serve_neptune3(data_dir=tmp_path):
        result = runner.invoke(main, ["emulate", "neptune3", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"nmig: error: cannot start the neptune3 emulator: another emulator already serves {tmp_path}"
    result = runner.invoke(main, ["emulate", "neptune3", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback" in result.output and "Traceback" not in result.output


def test_run_state_evicted_from_the_cache_is_reloaded_exactly(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import ingest

    monkeypatch.setattr(ingest, "RUN_CACHE_SIZE", 2)
    project = store.create_project("demo", "p")
    engine = IngestEngine(store)
    run_ids = [f"r{i}" for i in range(5)]
    for run_id in run_ids:
        engine.apply(project, RunOperation(project="demo/p", run_id=run_id, create=CreateRun()), f"c-{run_id}")
    for round_ in range(3):  # every run is evicted between two of its requests
        for run_id in run_ids:
            op = _batch(round_ * 10, 10)
            op.run_id = run_id
            engine.apply(project, op, f"{run_id}-{round_}")
    stale = _batch(25, 1)  # step 25 is before each run's last step (29)
    stale.run_id = "r0"
    status = engine.apply(project, stale, "stale")
    # the config is taken (OK), both points are refused
    assert sorted((c.detail, c.count) for c in status.code_by_count) == [
        (IngestCode.OK, 1), (IngestCode.SERIES_STEP_NON_INCREASING, 2)]
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT a.run_pk) FROM points p JOIN attributes a USING (attr_pk)"
    ).fetchone() == (5 * 30 * 2, 5)
    assert db.execute("SELECT DISTINCT point_count, agg_sum FROM attributes WHERE path = 'm/a'").fetchall() == [
        (30, sum(step / 2 for step in range(30)))]


def test_experiment_names_move_to_the_newest_run_and_conflicting_creates_keep_the_run(tmp_path: Path, store: Store) -> None:
    from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import ForkPoint

    project = store.create_project("demo", "p")
    engine = IngestEngine(store)

    def create(run_id: str, **fields: object) -> list[tuple[int, int]]:
        op = RunOperation(project="demo/p", run_id=run_id, create=CreateRun(**fields))  # type: ignore[arg-type]
        status = engine.apply(project, op, f"create-{run_id}-{fields}")
        return sorted((c.detail, c.count) for c in status.code_by_count)

    assert create("first", experiment_id="exp") == [(IngestCode.OK, 1)]
    assert create("second", experiment_id="exp") == [(IngestCode.OK, 1)]
    db = sqlite3.connect(tmp_path / DB_FILE)
    heads = dict(db.execute(
        "SELECT r.run_id, a.value FROM attributes a JOIN runs r USING (run_pk) WHERE a.path = 'sys/experiment/is_head'"))
    assert heads == {"first": 0, "second": 1}
    names = dict(db.execute(
        "SELECT r.run_id, a.value FROM attributes a JOIN runs r USING (run_pk) WHERE a.path = 'sys/name'"))
    assert names == {"first": "exp", "second": "exp"}
    # A create with another fork point than the run's is reported and leaves the run as it was.
    fork = ForkPoint(parent_project="demo/p", parent_run_id="first")
    fork.step.whole = 3
    assert create("second", fork_point=fork) == [(IngestCode.RUN_CONFLICTING, 1)]
    assert db.execute("SELECT fork_parent_run_id, is_head FROM runs WHERE run_id = 'second'").fetchone() == (None, 1)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)
