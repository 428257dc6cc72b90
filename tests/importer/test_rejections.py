"""One bad value never takes its neighbours (issue 10, item 4): datetimes outside 3.x's 1900..2299 range are
written as their exact ISO strings and reported, and when the service rejects a request over one value, the
importer sends the rest again, each alone, and reports only that value."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.cli import main
from nmig.emulators.neptune3 import serve_neptune3
from nmig.emulators.neptune3.ingest import RejectRequests

pytestmark = pytest.mark.timeout(180)
UTC = dt.timezone.utc
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40


def _neighbours(w: Any) -> None:
    w.add_atom("sys/name", "string", "neighbours")
    w.add_string_set("sys/tags", ["a", "b"])
    for i in range(8):
        w.add_atom(f"params/p{i}", "int", i)
    w.add_atom("params/text", "string", "hello")
    w.add_atom("params/when", "datetime", "2024-01-02T03:04:05.678Z")
    w.add_file("files/blob", PNG, name="blob", ext="png")
    w.add_float_points("m/loss", [0, 1, 2], [0.5, 0.4, 0.3], [T0_MS, T0_MS + 1, T0_MS + 2])


def _out_of_range(w: Any) -> None:
    _neighbours(w)
    w.add_atom("params/too_early", "datetime", "1899-12-31T23:59:59.999Z")
    w.add_atom("params/too_late", "datetime", "2300-01-01T00:00:00.000Z")
    w.add_atom("params/first_day", "datetime", "1900-01-01T00:00:00.000Z")
    w.add_atom("params/last_day", "datetime", "2299-12-31T23:59:59.999Z")


def _import(bundle: Path, token: str, project: str) -> Any:
    return CliRunner().invoke(main, ["import", str(bundle), "--project", project, "--api-token", token, "--quiet"])


def test_out_of_range_datetimes_kept_as_strings_and_their_neighbours_arrive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    monkeypatch.chdir(tmp_path)
    bundle = write_bundle(tmp_path / "b", {"DT-1": _out_of_range, "DT-2": _neighbours},
                          created={"DT-2": "1850-06-01T00:00:00.000Z"})
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        result = _import(bundle, target.api_token, "demo/ranges")
        assert result.exit_code == 0, result.output
        neptune_query.set_api_token(target.api_token)
        row = nq.fetch_runs_table(project="demo/ranges", runs=["DT-1"], attributes=".*", type_suffix_in_column_names=True).iloc[0]
        assert row["params/too_early:string"] == "1899-12-31T23:59:59.999Z"
        assert row["params/too_late:string"] == "2300-01-01T00:00:00.000Z"
        assert row["params/first_day:datetime"] == dt.datetime(1900, 1, 1, tzinfo=UTC)
        # neptune-query reads stored milliseconds through a float: a microsecond off here, the millisecond exact
        assert abs(row["params/last_day:datetime"] - dt.datetime(2299, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)) <= dt.timedelta(microseconds=1)
        assert [row[f"params/p{i}:int"] for i in range(8)] == list(range(8))
        assert row["params/text:string"] == "hello"
        old = nq.fetch_runs_table(project="demo/ranges", runs=["DT-2"], attributes=["legacy_sys/creation_time"]).iloc[0]
        assert old["legacy_sys/creation_time"] == "1850-06-01T00:00:00.000Z"
        verified = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/ranges", "--api-token", target.api_token, "--quiet"])
        assert verified.exit_code == 0, verified.output
    doc = report(bundle)
    cases = {(i["run"], i["path"]) for i in items(doc, "datetime_out_of_range")}
    assert cases == {("DT-1", "params/too_early"), ("DT-1", "params/too_late"), ("DT-2", "sys/creation_time")}
    assert not items(doc, "failed")


def test_a_rejected_request_loses_only_the_rejected_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    monkeypatch.chdir(tmp_path)
    bundle = write_bundle(tmp_path / "b", {"RJ-1": _neighbours, "RJ-2": _neighbours})
    with serve_neptune3(data_dir=tmp_path / "n3", reject_requests=RejectRequests(frozenset({"params/p3"}))) as target:
        result = _import(bundle, target.api_token, "demo/reject")
        assert result.exit_code == 1  # a value is lost: said, not hidden
        neptune_query.set_api_token(target.api_token)
        table = nq.fetch_runs_table(project="demo/reject", runs=["RJ-1", "RJ-2"], attributes=".*",
                                    type_suffix_in_column_names=True)
        for run_id in ("RJ-1", "RJ-2"):
            row = table.loc[run_id]
            assert [row[f"params/p{i}:int"] for i in range(8) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
            assert "params/p3:int" not in row.index or row.isna()["params/p3:int"]
            assert row["params/text:string"] == "hello"
            assert row["params/when:datetime"] == dt.datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
            assert set(row["sys/tags:string_set"]) == {"a", "b"}
            assert row["files/blob:file"].size_bytes == len(PNG)
            metric = nq.fetch_metrics(project="demo/reject", runs=[run_id], attributes=["m/loss"]).reset_index()
            assert metric["m/loss"].tolist() == [0.5, 0.4, 0.3]
        verify_report = tmp_path / "v.json"
        verified = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/reject", "--api-token",
                                             target.api_token, "--quiet", "--report", str(verify_report)])
    assert verified.exit_code == 1
    differences = {(d["run"], d["path"], d["what"]) for run in json.loads(verify_report.read_text())["runs"] for d in run["differences"]}
    assert differences == {("RJ-1", "params/p3", "missing_config"), ("RJ-2", "params/p3", "missing_config")}
    doc = report(bundle)
    assert {(i["run"], i["path"]) for i in items(doc, "failed")} == {("RJ-1", "params/p3"), ("RJ-2", "params/p3")}
    assert len(items(doc, "sent_again_alone")) == 2
