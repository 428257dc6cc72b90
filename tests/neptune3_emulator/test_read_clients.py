"""The read path end to end: runs written by the unmodified neptune_scale.Run, read back by neptune_query.

One emulator and three runs are shared by the whole module (each Run starts a sync process, so they are few):
- "main" (experiment "exp-a"): configs of every type, metrics with whole and fractional steps, a rejected
  point, string series, histograms, tags and group tags, an assigned file and a file series;
- "other" (experiment "exp-b"): a few configs and metrics, for filters and sorting;
- "fork": forked from "main" at step 3, with metrics of its own after the fork.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neptune_query as nq
import neptune_query.runs as nq_runs
import pandas as pd
import pytest
from neptune_query.filters import Attribute, AttributeFilter, Filter
from neptune_query.types import File as QueryFile
from neptune_query.types import Histogram as QueryHistogram
from neptune_scale import Run
from neptune_scale.projects import create_project
from neptune_scale.types import Histogram

from nmig.emulators.neptune3 import retrieval_series, serve_neptune3

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
CONFIG_DATETIME = dt.datetime(2023, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MAIN_LOSS = {1.0: 1.0, 2.0: 0.5, 3.0: 0.25, 4.0: 0.125, 5.0: 0.0625, 5.5: 0.03125}
FORK_LOSS = {4.0: 40.0, 5.0: 50.0}
REJECTED_VALUE = 999.0
FILE_BYTES = b"assigned file \x00\x01 bytes"
SERIES_FILE_BYTES = {1.0: b"first series file", 2.0: b"second series file"}
HISTOGRAMS = {1.0: ([0.0, 1.0, 2.0], [3, 4]), 2.0: ([0.0, 0.5, 1.0], [1, 9])}  # counts must be ints: the client drops others


def metric_time(step: float) -> dt.datetime:
    # Distinct milliseconds per point, so a timestamp read back proves itself to the ms.
    return T0 + dt.timedelta(seconds=step, milliseconds=7)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("read_clients")
    errors: list[BaseException] = []
    with serve_neptune3(data_dir=tmp / "data") as info, pytest.MonkeyPatch.context() as patch:
        for key, value in info.env.items():
            patch.setenv(key, value)
        project = f"{info.workspace}/readpath"
        create_project("readpath", workspace=info.workspace, api_token=info.api_token)
        common: dict[str, Any] = dict(
            project=project,
            api_token=info.api_token,
            log_directory=tmp / "client",
            enable_console_log_capture=False,
            source_tracking_config=None,
            on_error_callback=lambda exc, ts: errors.append(exc),
        )
        (tmp / "assigned.bin").write_bytes(FILE_BYTES)
        with Run(run_id="main", experiment_name="exp-a", creation_time=T0, **common) as run:
            run.log_configs(
                {"cfg/f": 1.5, "cfg/i": 3, "cfg/s": "text", "cfg/b": True, "cfg/d": CONFIG_DATETIME,
                 "cfg/set": {"a", "b"}}
            )
            for step, value in MAIN_LOSS.items():
                run.log_metrics({"m/loss": value}, step=step, timestamp=metric_time(step))
            run.log_metrics({"m/loss": REJECTED_VALUE}, step=2, timestamp=metric_time(6))  # not after the last step
            for step in range(1, 31):
                run.log_string_series({"logs/out": f"line {step}"}, step=step, timestamp=metric_time(step))
            for step, (edges, counts) in HISTOGRAMS.items():
                run.log_histograms({"h/dist": Histogram(bin_edges=edges, counts=counts)}, step=step,
                                   timestamp=metric_time(step))
            run.add_tags(["t1", "t2", "t3"])
            run.remove_tags(["t3"])
            run.add_tags(["g1"], group_tags=True)
            run.assign_files({"files/a": str(tmp / "assigned.bin")})
            for step, data in SERIES_FILE_BYTES.items():
                run.log_files({"fs/x": data}, step=step, timestamp=metric_time(step))
            run.wait_for_processing()
        with Run(run_id="other", experiment_name="exp-b", creation_time=T0 + dt.timedelta(days=1), **common) as run:
            run.log_configs({"cfg/f": 0.5, "cfg/i": 7})
            for step in (1, 2, 3):
                run.log_metrics({"m/loss": 2.0 * step}, step=step, timestamp=metric_time(step))
            run.add_tags(["t2"])
        with Run(run_id="fork", fork_run_id="main", fork_step=3, creation_time=T0 + dt.timedelta(days=2), **common) as run:
            for step, value in FORK_LOSS.items():
                run.log_metrics({"m/loss": value}, step=step, timestamp=metric_time(step))
        nq.set_api_token(info.api_token)
        yield {"project": project, "errors": errors, "tmp": tmp, "info": info}


def series_points(frame: pd.DataFrame, run: str, attribute: str) -> dict[float, Any]:
    """{step: value} of one run's series in a fetch_metrics / fetch_series frame (NaN rows dropped)."""
    column = frame[attribute]
    if isinstance(column, pd.DataFrame):
        column = column["value"]
    rows = column.xs(run, level="run")
    return {float(step): value for step, value in rows.items() if not (isinstance(value, float) and math.isnan(value))}


def series_times(frame: pd.DataFrame, run: str, attribute: str) -> dict[float, dt.datetime]:
    rows = frame[attribute]["absolute_time"].xs(run, level="run").dropna()
    return {float(step): stamp.to_pydatetime() for step, stamp in rows.items()}


def test_the_write_errors_are_only_the_rejected_point(written: dict[str, Any]) -> None:
    assert written["errors"], "the non-increasing step must reach on_error_callback"


def test_list_runs_and_experiments(written: dict[str, Any]) -> None:
    project = written["project"]
    assert nq_runs.list_runs(project=project) == ["fork", "main", "other"]
    assert nq_runs.list_runs(project=project, runs="^ma") == ["main"]
    assert nq_runs.list_runs(project=project, runs=Filter.gt("cfg/i", 5)) == ["other"]
    assert nq_runs.list_runs(project=project, runs=Filter.contains_all("sys/tags", ["t1"])) == ["main"]
    assert nq_runs.list_runs(project=project, runs=Filter.contains_none("sys/tags", ["t3"])) == ["fork", "main", "other"]
    assert nq.list_experiments(project=project) == ["exp-a", "exp-b"]


def test_list_attributes_with_name_and_type_filters(written: dict[str, Any]) -> None:
    project = written["project"]
    assert nq_runs.list_attributes(project=project, runs=["main"], attributes="^cfg/") == [
        "cfg/b", "cfg/d", "cfg/f", "cfg/i", "cfg/s", "cfg/set",
    ]
    assert nq_runs.list_attributes(project=project, attributes=AttributeFilter(type="float_series")) == ["m/loss"]
    every = nq_runs.list_attributes(project=project, runs=["main"])
    for name in ("files/a", "fs/x", "h/dist", "logs/out", "m/loss", "sys/custom_run_id", "sys/tags"):
        assert name in every


def test_runs_table_values_of_every_type(written: dict[str, Any]) -> None:
    table = nq_runs.fetch_runs_table(project=written["project"], runs=["main"], attributes="^cfg/|^m/loss$|^files/a$")
    row = table.loc["main"]
    assert row["cfg/f"] == 1.5
    assert row["cfg/i"] == 3
    assert row["cfg/s"] == "text"
    assert row["cfg/b"] is True or row["cfg/b"] == True  # noqa: E712 - numpy bools
    assert row["cfg/d"].to_pydatetime() == CONFIG_DATETIME
    assert row["cfg/set"] == {"a", "b"}
    assert row["m/loss"] == MAIN_LOSS[5.5]  # last value; the rejected point did not become the last
    assert isinstance(row["files/a"], QueryFile) and row["files/a"].size_bytes == len(FILE_BYTES)


def test_sys_attributes(written: dict[str, Any]) -> None:
    table = nq_runs.fetch_runs_table(project=written["project"], attributes="^sys/")
    main, fork = table.loc["main"], table.loc["fork"]
    assert main["sys/custom_run_id"] == "main"
    assert main["sys/name"] == "exp-a" and main["sys/experiment/name"] == "exp-a"
    assert main["sys/creation_time"].to_pydatetime() == T0
    assert main["sys/modification_time"].to_pydatetime() >= T0
    assert isinstance(main["sys/owner"], str) and main["sys/owner"]
    assert main["sys/tags"] == {"t1", "t2"}
    assert main["sys/group_tags"] == {"g1"}
    assert main["sys/description"] == ""
    assert main["sys/forking/depth"] == 0
    assert isinstance(main["sys/id"], str) and main["sys/id"] != fork["sys/id"]
    assert fork["sys/forking/depth"] == 1
    assert fork["sys/forking/parent"] == "main"
    assert fork["sys/forking/step"] == 3.0
    assert fork["sys/creation_time"].to_pydatetime() == T0 + dt.timedelta(days=2)


def test_runs_table_filter_sort_and_limit(written: dict[str, Any]) -> None:
    project = written["project"]
    ascending = nq_runs.fetch_runs_table(
        project=project, runs=["main", "other"], attributes=["cfg/i"], sort_by="cfg/i", sort_direction="asc"
    )
    assert list(ascending.index) == ["main", "other"]
    descending = nq_runs.fetch_runs_table(
        project=project, runs=["main", "other"], attributes=["cfg/i"], sort_by="cfg/i", sort_direction="desc"
    )
    assert list(descending.index) == ["other", "main"]
    by_metric = nq_runs.fetch_runs_table(
        project=project, runs=["main", "other"], attributes=["m/loss"],
        sort_by=Attribute("m/loss", type="float_series"), sort_direction="desc",
    )
    assert list(by_metric.index) == ["other", "main"]  # last values 6.0 and 0.03125
    newest = nq_runs.fetch_runs_table(project=project, attributes=["sys/custom_run_id"], limit=1)
    assert list(newest.index) == ["fork"]  # default sort: sys/creation_time, newest first
    filtered = nq_runs.fetch_runs_table(
        project=project, runs=Filter.eq("cfg/s", "text") & Filter.lt(Attribute("m/loss", type="float_series"), 1.0),
        attributes=["cfg/s"],
    )
    assert list(filtered.index) == ["main"]  # "fork" inherited cfg/s, but its last m/loss is 50


def test_metrics_values_steps_and_absolute_times_to_the_ms(written: dict[str, Any]) -> None:
    frame = nq_runs.fetch_metrics(project=written["project"], runs=["main"], attributes="^m/loss$", include_time="absolute")
    assert series_points(frame, "main", "m/loss") == MAIN_LOSS  # the rejected value is absent
    times = series_times(frame, "main", "m/loss")
    assert times == {step: metric_time(step) for step in MAIN_LOSS}
    assert all(stamp.tzinfo is not None and stamp.utcoffset() == dt.timedelta(0) for stamp in times.values())


def test_metrics_step_range_and_tail_limit(written: dict[str, Any]) -> None:
    project = written["project"]
    ranged = nq_runs.fetch_metrics(project=project, runs=["main"], attributes=["m/loss"], step_range=(2, 4))
    assert series_points(ranged, "main", "m/loss") == {s: MAIN_LOSS[s] for s in (2.0, 3.0, 4.0)}
    tail = nq_runs.fetch_metrics(project=project, runs=["main"], attributes=["m/loss"], tail_limit=2)
    assert series_points(tail, "main", "m/loss") == {s: MAIN_LOSS[s] for s in (5.0, 5.5)}
    both = nq_runs.fetch_metrics(project=project, runs="^(main|other)$", attributes="^m/", tail_limit=1)
    assert series_points(both, "main", "m/loss") == {5.5: MAIN_LOSS[5.5]}
    assert series_points(both, "other", "m/loss") == {3.0: 6.0}


def test_forked_run_metrics_follow_the_lineage(written: dict[str, Any]) -> None:
    project = written["project"]
    full = nq_runs.fetch_metrics(project=project, runs=["fork"], attributes=["m/loss"])
    inherited = {s: MAIN_LOSS[s] for s in (1.0, 2.0, 3.0)}
    assert series_points(full, "fork", "m/loss") == {**inherited, **FORK_LOSS}
    own = nq_runs.fetch_metrics(project=project, runs=["fork"], attributes=["m/loss"], lineage_to_the_root=False)
    assert series_points(own, "fork", "m/loss") == FORK_LOSS


def test_string_series_with_times_and_paging(written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    project = written["project"]
    expected = {float(step): f"line {step}" for step in range(1, 31)}
    frame = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out"], include_time="absolute")
    assert series_points(frame, "main", "logs/out") == expected
    assert series_times(frame, "main", "logs/out") == {step: metric_time(step) for step in expected}
    # The server's own page size, small: the client must page with searchAfter tokens and lose nothing.
    monkeypatch.setattr(retrieval_series, "SERIES_PAGE_POINTS", 7)
    paged = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out"])
    assert series_points(paged, "main", "logs/out") == expected
    tail = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out"], tail_limit=10)
    assert series_points(tail, "main", "logs/out") == {float(s): f"line {s}" for s in range(21, 31)}
    ranged = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out"], step_range=(5, 9))
    assert series_points(ranged, "main", "logs/out") == {float(s): f"line {s}" for s in range(5, 10)}


def test_histogram_series(written: dict[str, Any]) -> None:
    frame = nq_runs.fetch_series(project=written["project"], runs=["main"], attributes=["h/dist"])
    points = series_points(frame, "main", "h/dist")
    assert set(points) == set(HISTOGRAMS)
    for step, (edges, counts) in HISTOGRAMS.items():
        assert isinstance(points[step], QueryHistogram)
        assert points[step].edges == edges and points[step].values == counts


def test_download_assigned_and_series_files(written: dict[str, Any]) -> None:
    project, tmp = written["project"], written["tmp"]
    table = nq_runs.fetch_runs_table(project=project, runs=["main"], attributes=["files/a"])
    downloaded = nq_runs.download_files(files=table, destination=tmp / "assigned")
    assert [Path(path).read_bytes() for path in downloaded["files/a"].dropna()] == [FILE_BYTES]
    series = nq_runs.fetch_series(project=project, runs=["main"], attributes=["fs/x"])
    files = series_points(series, "main", "fs/x")
    assert set(files) == set(SERIES_FILE_BYTES)
    result = nq_runs.download_files(files=series, destination=tmp / "series")
    got = {float(step): Path(path).read_bytes() for (_, step), path in result["fs/x"].items()}
    assert got == SERIES_FILE_BYTES



def test_experiments_api_reads_the_runs_heading_each_experiment(written: dict[str, Any]) -> None:
    project = written["project"]
    table = nq.fetch_experiments_table(project=project, experiments=["exp-a"], attributes=["cfg/i"])
    assert list(table.index) == ["exp-a"] and table.loc["exp-a", "cfg/i"] == 3
    metrics = nq.fetch_metrics(project=project, experiments="^exp-", attributes=["m/loss"], include_time="absolute")
    by_experiment = {name: series_points(metrics.rename_axis(index={"experiment": "run"}), name, "m/loss")
                     for name in ("exp-a", "exp-b")}
    assert by_experiment == {"exp-a": MAIN_LOSS, "exp-b": {1.0: 2.0, 2.0: 4.0, 3.0: 6.0}}


def test_metric_buckets(written: dict[str, Any]) -> None:
    """fetch_metric_buckets: the first point of the first bucket, the last point of each other bucket."""
    project = written["project"]
    frame = nq.fetch_metric_buckets(project=project, experiments=["exp-a"], y=["m/loss"], limit=3)
    column = frame[("exp-a", "m/loss")]
    rows = [(interval.left, interval.right, x, y) for interval, (x, y) in zip(
        frame.index, zip(column["x"], column["y"], strict=True), strict=True)]
    # Steps 1..5.5 in 3 buckets of width 1.5 over [1, 5.5].
    assert rows == [(1.0, 2.5, 1.0, MAIN_LOSS[1.0]), (2.5, 4.0, 4.0, MAIN_LOSS[4.0]), (4.0, 5.5, 5.5, MAIN_LOSS[5.5])]
    one = nq.fetch_metric_buckets(project=project, experiments=["exp-b"], y=["m/loss"], limit=1)
    assert [(i.left, i.right) for i in one.index] == [(1.0, 3.0)]
    assert list(one[("exp-b", "m/loss")]["y"]) == [2.0]  # a series' first bucket shows its first point

# -- the wire protocol directly: paging and errors the client hides ---------------------------------------------


def post(info: Any, path: str, body: Any, **query: str) -> tuple[int, bytes]:
    """POST a JSON body to the emulator with a bearer token obtained the way the clients obtain it."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from nmig.emulators.harness import bearer_headers

    url = info.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**bearer_headers(info.url, info.api_token), "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def float_request(project: str, after: float | None, descending: bool, limit: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "requestId": "0",
        "series": {"holder": {"identifier": f"CUSTOM/{project}/main", "type": "experiment"}, "attribute": "m/loss",
                   "lineage": "FULL", "lineageEntityType": "RUN", "includePreview": False},
    }
    if after is not None:
        request["afterStep"] = after
    return {"requests": [request], "stepRange": {"from": None, "to": None},
            "order": "descending" if descending else "ascending", "perSeriesPointsLimit": limit}


@pytest.mark.parametrize("descending", [True, False])
def test_float_series_pages_with_after_step(written: dict[str, Any], descending: bool) -> None:
    from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
        ProtoFloatSeriesValuesResponseDTO,
    )

    seen: list[float] = []
    after = None
    for _ in range(10):
        status, body = post(written["info"], "/api/leaderboard/v1/proto/attributes/series/float",
                            float_request(written["project"], after, descending, limit=4))
        assert status == 200
        page = [p.step for p in ProtoFloatSeriesValuesResponseDTO.FromString(body).series[0].series.values]
        seen.extend(page)
        if len(page) < 4:
            break
        after = page[-1]
    assert seen == sorted(MAIN_LOSS, reverse=descending)


def test_series_answer_defers_what_does_not_fit_and_the_client_still_gets_everything(
    written: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
        ProtoSeriesValuesResponseDTO,
    )

    project = written["project"]
    monkeypatch.setattr(retrieval_series, "RESPONSE_POINTS", 12)
    holder = {"identifier": f"CUSTOM/{project}/main", "type": "experiment"}
    body = {
        "requests": [
            {"requestId": "a", "series": {"holder": holder, "attribute": "logs/out", "lineage": "NONE"}},
            {"requestId": "b", "series": {"holder": holder, "attribute": "h/dist", "lineage": "NONE"}},
            {"requestId": "c", "series": {"holder": holder, "attribute": "no/such", "lineage": "NONE"}},
        ],
        "stepRange": {"from": None, "to": None},
        "order": "ascending",
    }
    status, raw = post(written["info"], "/api/leaderboard/v1/proto/attributes/series", body, useDeprecatedStringFields="false")
    assert status == 200
    answer = {series.requestId: series for series in ProtoSeriesValuesResponseDTO.FromString(raw).series}
    assert set(answer) == {"a", "b"}  # a series that does not exist is left out
    assert [p.object.stringValue for p in answer["a"].seriesValues.values] == [f"line {s}" for s in range(1, 13)]
    assert answer["a"].HasField("searchAfter") and not answer["a"].searchAfter.finished
    assert not answer["b"].HasField("searchAfter") and not answer["b"].seriesValues.values  # deferred
    frame = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out", "h/dist", "fs/x"])
    assert len(series_points(frame, "main", "logs/out")) == 30
    assert set(series_points(frame, "main", "h/dist")) == set(HISTOGRAMS)
    assert set(series_points(frame, "main", "fs/x")) == set(SERIES_FILE_BYTES)


def test_unknown_project_and_other_workspace_are_refused_with_the_clients_clear_error(written: dict[str, Any]) -> None:
    from neptune_query.exceptions import NeptuneProjectInaccessible

    for project in (f"{written['info'].workspace}/no-such-project", "elsewhere/readpath"):
        with pytest.raises(NeptuneProjectInaccessible):
            nq_runs.list_runs(project=project)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/leaderboard/v1/proto/leaderboard/entries/search/", b"not json"),
        ("/api/leaderboard/v1/proto/leaderboard/entries/search/", {"query": {"query": "`a` LIKE \"b\""}}),
        ("/api/leaderboard/v1/proto/leaderboard/entries/search/", {"pagination": {"offset": "ten"}}),
        ("/api/leaderboard/v1/leaderboard/attributes/definitions/query",
         {"projectIdentifiers": ["demo/readpath"], "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["("]}]}}),
        ("/api/leaderboard/v1/proto/attributes/series", {"requests": [{"requestId": "0", "series": {
            "holder": {"identifier": "CUSTOM/demo/readpath/main"}, "attribute": "logs/out"},
            "searchAfter": {"token": "forged"}}]}),
        ("/api/leaderboard/v1/proto/attributes/series", {"requests": [{"requestId": "0"}]}),
        ("/api/leaderboard/v1/proto/attributes/series/float", {"requests": [{"requestId": "0", "series": {
            "holder": {"identifier": "nonsense"}, "attribute": "m/loss"}}]}),
        ("/api/leaderboard/v1/proto/attributes/series/float", {"requests": [], "perSeriesPointsLimit": "many"}),
        ("/api/leaderboard/v1/proto/attributes/timeseries/buckets", b"\xff\xff not protobuf"),
        # More points than one request may carry: refused, never answered short (a short page ends the series).
        ("/api/leaderboard/v1/proto/attributes/series/float",
         {**float_request("demo/readpath", None, True, limit=600_000), "requests": 2 * float_request(
             "demo/readpath", None, True, limit=1)["requests"]}),
    ],
)
def test_malformed_requests_are_answered_400(written: dict[str, Any], path: str, body: Any) -> None:
    status, raw = post(written["info"], path, body, projectIdentifier=written["project"])
    assert status == 400, raw


def _copy_data_folder(source: Path, target: Path) -> None:
    """A consistent copy of a served data folder: the SQLite backup API reads committed data only."""
    import shutil
    import sqlite3

    from nmig.emulators.neptune3.store import DB_FILE

    target.mkdir(parents=True)
    with sqlite3.connect(f"file:{source / DB_FILE}?mode=ro", uri=True) as src, sqlite3.connect(target / DB_FILE) as dst:
        src.backup(dst)
    shutil.copytree(source / "blobs", target / "blobs")


@pytest.mark.slow
def test_reads_under_injected_faults_return_the_same_data(written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """neptune-query retries 5xx and 429 answers: with faults injected, it still reads everything exactly."""
    from neptune_query.internal import client as query_client
    from neptune_query.warnings import Http5xxWarning, Http429Warning, Http503Warning

    # the bare client, as users run it: not nmig's quicker retries, which an import or verify earlier in this
    # process put under the clients neptune-query builds (nmig.importer.client.retry_query_answers_quickly)
    create = query_client.create_auth_api_client
    monkeypatch.setattr(query_client, "create_auth_api_client", getattr(create, "_nmig_original", create))

    project, tmp = written["project"], written["tmp"]
    expected_metrics = nq_runs.fetch_metrics(project=project, runs=".*", attributes=".*", include_time="absolute")
    expected_table = nq_runs.fetch_runs_table(project=project, attributes="^cfg/|^sys/(tags|custom_run_id)$")
    faulty_dir = tmp / "faulty"
    _copy_data_folder(tmp / "data", faulty_dir)
    with serve_neptune3(data_dir=faulty_dir, fail_rate=0.2, throttle_rate=0.05, seed=3) as info:
        nq.set_api_token(info.api_token)
        try:
            with pytest.warns((Http5xxWarning, Http503Warning, Http429Warning)):  # faults happened and were retried
                metrics = nq_runs.fetch_metrics(project=project, runs=".*", attributes=".*", include_time="absolute")
                table = nq_runs.fetch_runs_table(project=project, attributes="^cfg/|^sys/(tags|custom_run_id)$")
                series = nq_runs.fetch_series(project=project, runs=["main"], attributes=["logs/out"])
        finally:
            nq.set_api_token(written["info"].api_token)
    pd.testing.assert_frame_equal(metrics, expected_metrics)
    pd.testing.assert_frame_equal(table, expected_table)
    assert len(series_points(series, "main", "logs/out")) == 30


def test_definitions_and_values_page_with_tokens(written: dict[str, Any]) -> None:
    import json

    from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2 import (
        ProtoQueryAttributesResultDTO,
    )

    project = written["project"]
    expected = nq_runs.list_attributes(project=project)
    names: list[str] = []
    page: dict[str, Any] = {"limit": 3}
    for _ in range(100):
        status, raw = post(written["info"], "/api/leaderboard/v1/leaderboard/attributes/definitions/query",
                           {"projectIdentifiers": [project], "attributeNameFilter": {}, "nextPage": page})
        assert status == 200
        answer = json.loads(raw)
        assert len(answer["entries"]) <= 3
        names.extend(entry["name"] for entry in answer["entries"])
        token = answer["nextPage"].get("nextPageToken")
        if not token:
            break
        page = {"limit": 3, "nextPageToken": token}
    assert sorted(set(names)) == expected and len(names) == len(set(names))

    values: list[tuple[str, str]] = []
    page = {"limit": 5}
    for _ in range(100):
        status, raw = post(written["info"], "/api/leaderboard/v1/proto/leaderboard/attributes/query",
                           {"experimentIdsFilter": [f"CUSTOM/{project}/main", f"CUSTOM/{project}/other"],
                            "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["^cfg/"]}]},
                            "nextPage": page}, projectIdentifier=project)
        assert status == 200
        answer = ProtoQueryAttributesResultDTO.FromString(raw)
        values.extend((entry.experimentShortId, attr.name) for entry in answer.entries for attr in entry.attributes)
        if not answer.nextPage.nextPageToken:
            break
        page = {"limit": 5, "nextPageToken": answer.nextPage.nextPageToken}
    assert len(values) == 8 and len(set(values)) == 8  # main: 6 configs, other: 2
