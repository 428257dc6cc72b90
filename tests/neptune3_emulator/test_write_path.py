"""The write path of the Neptune 3.x emulator, driven by the unmodified neptune_scale.Run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from nmig.emulators.neptune3.storage import blob_name


def _blob_bytes(emulator: Any, file_value: str) -> bytes:
    """The bytes uploaded for a stored file reference (JSON {"path", "size_bytes", "mime_type"})."""
    key = json.loads(file_value)["path"]
    db = emulator.db()
    row = db.execute("SELECT project_pk, size, sha256 FROM blobs WHERE path = ?", (key,)).fetchone()
    assert row is not None, f"no blob uploaded under {key}"
    data = (emulator.data_dir / "blobs" / blob_name(row[0], key)).read_bytes()
    assert len(data) == row[1] and hashlib.sha256(data).hexdigest() == row[2]
    return data


def test_run_writes_every_kind_of_data_and_invalid_items_are_rejected(neptune3, open_run, store_view) -> None:
    from neptune_scale.types import Histogram

    created = datetime(2023, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
    t0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    big = os.urandom(600 * 1024)  # above the fixture's 256 KiB part size: a 3-part multipart upload
    run, callbacks = open_run(neptune3.info, run_id="every-kind", experiment_name="exp-every", creation_time=created)
    run.log_configs(
        {
            "cfg/float": 0.25,
            "cfg/int": 42,
            "cfg/str": "adam",
            "cfg/bool": True,
            "cfg/when": datetime(2022, 12, 31, 23, 59, 58, 999000, tzinfo=timezone.utc),
            "cfg/set": ["a", "b"],
        }
    )
    run.log_configs({"cfg/str": "sgd"})  # configs overwrite
    for step in range(5):
        run.log_metrics({"m/loss": 1.0 / (step + 1), "m/acc": step / 10}, step=step, timestamp=t0 + timedelta(seconds=step))
    run.log_metrics({"m/fine": 0.5}, step=1.25, timestamp=t0)
    run.log_string_series({"logs/text": "first line"}, step=1, timestamp=t0)
    run.log_string_series({"logs/text": "second line"}, step=2, timestamp=t0 + timedelta(seconds=1))
    run.add_tags(["t1", "t2", "t3"])
    run.add_tags(["t1"])  # idempotent
    run.remove_tags(["t2"])
    run.add_tags(["g1"], group_tags=True)
    run.assign_files({"files/small": b"small file bytes", "files/big": big})
    run.log_files({"files/series": b"step one bytes"}, step=1, timestamp=t0)
    run.log_histograms({"h/hist": Histogram(bin_edges=[0.0, 1.0, 2.0], counts=[3, 4])}, step=1, timestamp=t0)
    # Invalid items the client forwards and the service rejects:
    run.log_metrics({"m/loss": 9.0}, step=2, timestamp=t0 + timedelta(seconds=9))  # step not increasing
    run.log_configs({"m/acc": "text"})  # type conflict with the float series
    run.log_configs({"sys/owner": "someone"})  # read-only sys attribute
    run.close()

    assert sorted(callbacks.kinds()) == sorted(
        ["NeptuneSeriesStepNonIncreasing", "NeptuneAttributeTypeMismatch", "NeptuneAttributePathNonWritable"]
    ), callbacks.errors
    db = neptune3.db()
    attrs = store_view.attributes(db, "every-kind")
    assert attrs["cfg/float"] == ("float", 0.25)
    assert attrs["cfg/int"] == ("int", 42)
    assert attrs["cfg/str"] == ("string", "sgd")
    assert attrs["cfg/bool"] == ("bool", 1)
    assert attrs["cfg/when"] == ("datetime", int(datetime(2022, 12, 31, 23, 59, 58, 999000, tzinfo=timezone.utc).timestamp() * 1000))
    assert attrs["cfg/set"] == ("string_set", ["a", "b"])
    assert attrs["sys/tags"] == ("string_set", ["t1", "t3"])
    assert attrs["sys/group_tags"] == ("string_set", ["g1"])
    assert attrs["sys/custom_run_id"] == ("string", "every-kind")
    assert attrs["sys/name"] == ("string", "exp-every")
    assert attrs["sys/experiment/name"] == ("string", "exp-every")
    assert attrs["sys/experiment/is_head"] == ("bool", 1)
    assert attrs["sys/creation_time"] == ("datetime", 1683356889123)
    assert attrs["sys/owner"] == ("string", "unspecified")
    assert attrs["m/acc"][0] == "float_series"

    t0_ms = 1704164645678
    # The rejected point (step 2, value 9.0) is not stored; steps keep whole and micro parts.
    assert store_view.points(db, "every-kind", "m/loss") == [
        (step, 0, t0_ms + 1000 * step, 1.0 / (step + 1)) for step in range(5)
    ]
    assert store_view.points(db, "every-kind", "m/fine") == [(1, 250000, t0_ms, 0.5)]
    assert store_view.points(db, "every-kind", "logs/text") == [(1, 0, t0_ms, "first line"), (2, 0, t0_ms + 1000, "second line")]
    [(_, _, _, hist)] = store_view.points(db, "every-kind", "h/hist")
    assert json.loads(hist) == {"type": "COUNTING", "edges": [0.0, 1.0, 2.0], "values": [3, 4]}
    [(whole, micro, _, series_file)] = store_view.points(db, "every-kind", "files/series")
    assert (whole, micro) == (1, 0)
    assert _blob_bytes(neptune3, series_file) == b"step one bytes"
    assert _blob_bytes(neptune3, attrs["files/small"][1]) == b"small file bytes"
    assert _blob_bytes(neptune3, attrs["files/big"][1]) == big
    assert json.loads(attrs["files/big"][1])["size_bytes"] == len(big)
    assert not list((neptune3.data_dir / "uploads").iterdir()), "multipart parts left behind"


def test_creating_an_existing_run_resumes_it(neptune3, open_run, store_view) -> None:
    created = datetime(2021, 1, 1, tzinfo=timezone.utc)
    run, first = open_run(neptune3.info, run_id="resumed", creation_time=created)
    run.log_configs({"cfg/lr": 0.1, "cfg/name": "before"})
    for step in range(3):
        run.log_metrics({"m/x": float(step)}, step=step)
    run.close()

    run, second = open_run(neptune3.info, run_id="resumed")
    run.log_configs({"cfg/name": "after"})
    for step in range(3, 6):
        run.log_metrics({"m/x": float(step)}, step=step)
    run.close()

    assert first.errors == first.warnings == second.errors == second.warnings == []
    db = neptune3.db()
    assert db.execute("SELECT COUNT(*) FROM runs WHERE run_id = 'resumed'").fetchone() == (1,)
    attrs = store_view.attributes(db, "resumed")
    assert attrs["sys/creation_time"] == ("datetime", int(created.timestamp() * 1000))
    assert attrs["cfg/lr"] == ("float", 0.1)
    assert attrs["cfg/name"] == ("string", "after")
    assert [(s, v) for s, _, _, v in store_view.points(db, "resumed", "m/x")] == [(s, float(s)) for s in range(6)]


def test_project_in_an_unknown_workspace_is_refused(neptune3, open_run) -> None:
    import pytest
    from neptune_scale.exceptions import NeptuneBadRequestError
    from neptune_scale.projects import create_project

    with pytest.raises(NeptuneBadRequestError, match="Workspace 'elsewhere' not found"):
        create_project("elsewhere/project", api_token=neptune3.info.api_token)

    run, callbacks = open_run(neptune3.info, project="elsewhere/project", run_id="lost")
    run.log_metrics({"m/x": 1.0}, step=1)
    run.close(timeout=60)
    assert "NeptuneProjectNotFound" in callbacks.kinds(), callbacks.errors
    db = neptune3.db()
    assert db.execute("SELECT COUNT(*) FROM projects WHERE workspace = 'elsewhere'").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM runs WHERE run_id = 'lost'").fetchone() == (0,)


def _dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    import sqlite3

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    tables = ["projects", "runs", "attributes", "points", "string_set_members", "blobs", "requests"]
    return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def test_a_killed_server_restarted_on_the_same_folder_loses_nothing_acknowledged(tmp_path, open_run, store_view) -> None:
    from neptune_scale.projects import create_project

    from nmig.emulators.harness import emulator_process

    data_dir = tmp_path / "data"
    with emulator_process("neptune3", "--data-dir", str(data_dir)) as server:
        info = server.info
        create_project("demo/durable", api_token=info.api_token)
        run, callbacks = open_run(info, project="demo/durable", run_id="durable")
        run.log_configs({"cfg/a": 1, "cfg/tags": ["x"]})
        for step in range(50):
            run.log_metrics({"m/a": step * 0.5, "m/b": -step}, step=step)
        run.assign_files({"files/f": b"durable bytes"})
        run.close()  # returns when the server has acknowledged and processed everything
        assert callbacks.errors == []
        before = _dump(data_dir / "neptune3.sqlite3")
        server.process.kill()  # SIGKILL: the server gets no chance to finish or flush anything
        server.process.wait(timeout=10)

    with emulator_process("neptune3", "--data-dir", str(data_dir)) as server:
        assert _dump(data_dir / "neptune3.sqlite3") == before
        info = server.info
        # The restarted server knows the same project and run: resuming continues the series.
        run, callbacks = open_run(info, project="demo/durable", run_id="durable")
        run.log_metrics({"m/a": 100.0}, step=50)
        run.close()
        assert callbacks.errors == [] and callbacks.warnings == []
    db = __import__("sqlite3").connect(data_dir / "neptune3.sqlite3")
    values = [v for _, _, _, v in store_view.points(db, "durable", "m/a", project="demo/durable")]
    assert values == [step * 0.5 for step in range(50)] + [100.0]
    key = json.loads(store_view.attributes(db, "durable", project="demo/durable")["files/f"][1])["path"]
    project_pk = db.execute("SELECT project_pk FROM projects WHERE name = 'durable'").fetchone()[0]
    assert (data_dir / "blobs" / blob_name(project_pk, key)).read_bytes() == b"durable bytes"


def test_under_a_ten_percent_fail_rate_every_write_arrives_exactly_once(tmp_path, open_run, store_view) -> None:
    import time

    from neptune_scale.projects import create_project

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.server import FAULT_EXEMPT

    # Seed 83 faults the 2nd, 3rd and 5th faultable request, so at least three faults happen whatever the
    # order in which the clients' threads call; the rest of the sequence is 10% as well.
    faults = FaultPlan(fail_rate=0.1, seed=83, exempt=FAULT_EXEMPT)
    run_ids = ("faulty-1", "faulty-2")
    # Two runs (two client sync processes) write at once; short-lived access tokens make the clients
    # refresh their tokens while faults happen.
    with serve_neptune3(data_dir=tmp_path / "data", faults=faults, access_ttl_s=32) as info:
        create_project("demo/faulty", api_token=info.api_token)
        opened = [open_run(info, project="demo/faulty", run_id=run_id) for run_id in run_ids]
        for batch in range(40):
            for run, _ in opened:
                for step in range(batch * 10, batch * 10 + 10):
                    run.log_metrics({"m/a": step * 1.5, "m/b": float(step)}, step=step)
                run.log_configs({f"cfg/c{batch}": batch})
            time.sleep(0.05)  # spread the writes over many ingest requests
        for index, (run, _) in enumerate(opened):
            run.assign_files({"files/f": f"through faults {index}".encode()})
        for run, _ in opened:
            run.close()
        db = __import__("sqlite3").connect(tmp_path / "data" / "neptune3.sqlite3")
        requests = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]

        assert faults.injected >= 3, f"only {faults.injected} faults injected over {requests} requests"
        for index, (run_id, (_, callbacks)) in enumerate(zip(run_ids, opened, strict=True)):
            assert callbacks.errors == [], callbacks.errors
            assert [w for w in callbacks.warnings if "Duplicate" in type(w).__name__] == []
            assert [(s, v) for s, _, _, v in store_view.points(db, run_id, "m/a", project="demo/faulty")] == [
                (s, s * 1.5) for s in range(400)
            ]
            assert len(store_view.points(db, run_id, "m/b", project="demo/faulty")) == 400
            attrs = store_view.attributes(db, run_id, project="demo/faulty")
            assert all(attrs[f"cfg/c{b}"] == ("int", b) for b in range(40))
            key = json.loads(attrs["files/f"][1])["path"]
            project_pk = db.execute("SELECT project_pk FROM projects WHERE name = 'faulty'").fetchone()[0]
            blob = tmp_path / "data" / "blobs" / blob_name(project_pk, key)
            assert blob.read_bytes() == f"through faults {index}".encode()
        assert db.execute("SELECT COUNT(*) FROM request_errors").fetchone() == (0,)


def _authorized(info: Any) -> Any:
    import httpx

    from nmig.emulators.harness import bearer_headers

    return httpx.Client(base_url=info.url, headers=bearer_headers(info.url, info.api_token))


def test_tokens_are_exchanged_refreshed_and_checked(neptune3) -> None:
    import httpx

    from nmig.secrets import make_api_token

    url = neptune3.info.url
    assert httpx.get(f"{url}/api/backend/v1/authorization/oauth-token",
                     headers={"X-Neptune-Api-Token": make_api_token(url, "wrong-key")}).status_code == 401
    tokens = httpx.get(f"{url}/api/backend/v1/authorization/oauth-token",
                       headers={"X-Neptune-Api-Token": neptune3.info.api_token}).json()
    config = httpx.get(f"{url}/api/backend/v1/clients/config").json()
    discovery = httpx.get(config["security"]["openIdDiscovery"]).json()
    refreshed = httpx.post(discovery["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": tokens["refreshToken"], "client_id": config["security"]["clientId"]})
    assert refreshed.status_code == 200
    access = refreshed.json()["access_token"]
    assert access != tokens["accessToken"]
    listed = httpx.get(f"{url}/api/backend/v1/projects", headers={"Authorization": f"Bearer {access}"})
    assert listed.status_code == 200 and "write-path" in [p["name"] for p in listed.json()["entries"]]
    for bad in ("Bearer not-a-token", f"Bearer {tokens['refreshToken']}", ""):
        assert httpx.post(f"{url}/api/client/v1/ingest", content=b"", headers={"Authorization": bad}).status_code == 401
    assert httpx.post(discovery["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": tokens["accessToken"]}).status_code == 400


def test_request_status_and_details_report_each_rejected_item(neptune3) -> None:
    from neptune_api.proto.google_rpc.code_pb2 import Code
    from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
    from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Step, UpdateRunSnapshot
    from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
    from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import (
        BulkCheckDetail,
        BulkIngestResultDetail,
        BulkRequestStatus,
        RequestId,
        RequestIdList,
        SubmitResponse,
    )
    from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

    def submit(client: Any, op: RunOperation) -> str:
        answer = client.post("/api/client/v1/ingest", content=op.SerializeToString())
        assert answer.status_code == 200
        return SubmitResponse.FromString(answer.content).request_ids[0]

    with _authorized(neptune3.info) as client:
        project = "demo/write-path"
        created = submit(client, RunOperation(project=project, run_id="raw", create=CreateRun(family="raw")))
        update = UpdateRunSnapshot(step=Step(whole=5, micro=250000))
        update.timestamp.seconds = 1_700_000_000
        update.append["m/x"].float64 = 1.0
        update.assign["sys/name"].string = "renamed"  # read-only
        update.assign["c/bad"].string = "x" * (1024 * 1024 + 1)  # over the 1 MiB limit
        first = submit(client, RunOperation(project=project, run_id="raw", update=update))
        again = UpdateRunSnapshot(step=Step(whole=5, micro=0))  # before the last step
        again.timestamp.seconds = 1_700_000_001
        again.append["m/x"].float64 = 2.0
        second = submit(client, RunOperation(project=project, run_id="raw", update=again))
        missing = submit(client, RunOperation(project=project, run_id="no-such-run", update=again))

        ids = [created, first, second, missing, "never-issued"]
        # ingest is asynchronous: a status is UNAVAILABLE until its request is applied (as the client polls)
        for _ in range(200):
            answer = client.post(f"/api/client/v1/ingest/check?projectIdentifier={project}",
                                 content=RequestIdList(ids=[RequestId(value=i) for i in ids]).SerializeToString())
            statuses = BulkRequestStatus.FromString(answer.content).statuses
            if not any(c.code == Code.UNAVAILABLE for s in statuses for c in s.code_by_count):
                break
            time.sleep(0.02)
        codes = [sorted((c.detail, c.count) for c in s.code_by_count) for s in statuses]
        assert codes == [
            [(IngestCode.OK, 1)],
            sorted([(IngestCode.OK, 1), (IngestCode.FIELD_PATH_NON_WRITABLE, 1),
                    (IngestCode.STRING_VALUE_EXCEEDS_SIZE_LIMIT, 1)]),
            [(IngestCode.SERIES_STEP_NON_INCREASING, 1)],
            [(IngestCode.RUN_NOT_FOUND, 1)],
            [(IngestCode.INTERNAL, 1)],
        ]
        query = BulkCheckDetail(project=project, ids=[RequestId(value=first), RequestId(value=second)])
        answer = client.post(f"/api/client/v1/ingest/checkDetails?projectIdentifier={project}",
                             content=query.SerializeToString())
        details = BulkIngestResultDetail.FromString(answer.content).details
        assert sorted((d.request_id.value, d.path, d.ingest_code) for d in details) == sorted([
            (first, "sys/name", IngestCode.FIELD_PATH_NON_WRITABLE),
            (first, "c/bad", IngestCode.STRING_VALUE_EXCEEDS_SIZE_LIMIT),
            (second, "m/x", IngestCode.SERIES_STEP_NON_INCREASING),
        ])
        assert client.post("/api/client/v1/ingest", content=b"\xff\xff not protobuf").status_code == 400


def test_a_forked_run_starts_after_its_fork_point_and_inherits_configs(neptune3, open_run, store_view) -> None:
    parent, parent_callbacks = open_run(neptune3.info, run_id="fork-parent")
    parent.log_configs({"cfg/lr": 0.5})
    for step in range(10):
        parent.log_metrics({"m/x": float(step)}, step=step)
    parent.close()

    child, callbacks = open_run(neptune3.info, run_id="fork-child", fork_run_id="fork-parent", fork_step=5)
    child.log_metrics({"m/x": 50.0}, step=4)  # not after the fork point: rejected
    child.log_metrics({"m/x": 60.0}, step=6)
    child.close()

    assert parent_callbacks.errors == []
    assert callbacks.kinds() == ["NeptuneSeriesStepNotAfterForkPoint"], callbacks.errors
    db = neptune3.db()
    row = db.execute(
        "SELECT fork_parent_run_id, fork_step_whole, fork_step_micro, fork_depth FROM runs WHERE run_id = 'fork-child'"
    ).fetchone()
    assert row == ("fork-parent", 5, 0, 1)
    attrs = store_view.attributes(db, "fork-child")
    assert attrs["sys/forking/depth"] == ("int", 1)
    assert attrs["sys/forking/parent"] == ("string", "fork-parent")
    assert attrs["cfg/lr"] == ("float", 0.5)  # inherit_configs (the client's default)
    assert [(s, v) for s, _, _, v in store_view.points(db, "fork-child", "m/x")] == [(6, 60.0)]


def test_throttling_failures_and_latency_together_lose_nothing(tmp_path, open_run, store_view) -> None:
    from neptune_scale.projects import create_project

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.server import FAULT_EXEMPT

    # Seed 83 answers the first faultable requests 200, 429, 500, 429, 429: throttles and errors both happen.
    faults = FaultPlan(fail_rate=0.05, throttle_rate=0.15, latency_ms=5, seed=83, exempt=FAULT_EXEMPT)
    with serve_neptune3(data_dir=tmp_path / "data", faults=faults) as info:
        create_project("demo/throttled", api_token=info.api_token)
        run, callbacks = open_run(info, project="demo/throttled", run_id="throttled")
        for step in range(200):
            run.log_metrics({"m/a": step / 4}, step=step)
        run.add_tags(["kept"])
        run.close()
        db = __import__("sqlite3").connect(tmp_path / "data" / "neptune3.sqlite3")
        assert faults.injected >= 4
        assert callbacks.errors == []
        assert [(s, v) for s, _, _, v in store_view.points(db, "throttled", "m/a", project="demo/throttled")] == [
            (s, s / 4) for s in range(200)
        ]
        assert store_view.attributes(db, "throttled", project="demo/throttled")["sys/tags"] == ("string_set", ["kept"])


def test_requests_accepted_and_not_yet_applied_are_applied_after_a_restart_once(tmp_path) -> None:
    # What a server killed between answering a submit and applying it leaves in its ingest queue: the
    # restarted server applies it, in order; a request already applied (killed before its file was removed)
    # is not applied twice.
    import sqlite3

    from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
    from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Step, UpdateRunSnapshot
    from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.ingest import INGEST_QUEUE_DIR

    data_dir = tmp_path / "data"
    project = "demo/queued"
    with serve_neptune3(data_dir=data_dir) as info:
        from neptune_scale.projects import create_project

        create_project(project, api_token=info.api_token)
    create = RunOperation(project=project, run_id="q", create=CreateRun(family="q"))
    update = UpdateRunSnapshot(step=Step(whole=1))
    update.timestamp.seconds = 1_700_000_000
    update.append["m/x"].float64 = 0.5
    queued = data_dir / INGEST_QUEUE_DIR
    for seq, (request_id, op) in enumerate([("id-create", create), ("id-update", RunOperation(project=project, run_id="q", update=update)),
                                            ("id-update", RunOperation(project=project, run_id="q", update=update))]):
        (queued / f"{seq:012d}-{request_id}.bin").write_bytes(op.SerializeToString())
    with serve_neptune3(data_dir=data_dir):
        for _ in range(200):
            if not list(queued.glob("*.bin")):
                break
            time.sleep(0.02)
        assert not list(queued.glob("*.bin"))
    db = sqlite3.connect(data_dir / "neptune3.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM requests WHERE request_id IN ('id-create', 'id-update')").fetchone() == (2,)
    assert db.execute("SELECT COUNT(*) FROM points").fetchone() == (1,)
