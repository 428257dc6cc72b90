"""The legacy project's own metadata lands in 3.x (issue 10, item 5): its identity, description and
project-level attributes as configs of the documented project-metadata run, what cannot land reported, and
`nmig verify` checking them (green as imported, red when a value is changed)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from importer_helpers import T0_MS, items, report

from nmig.cli import main
from nmig.emulators.neptune3 import serve_neptune3
from nmig.importer.plan import PROJECT_ITEM, PROJECT_RUN_ID

pytestmark = pytest.mark.timeout(180)

PROJECT_ATTRIBUTES = [
    {"path": "sys/id", "type": "string", "value": "PROJ"},
    {"path": "sys/name", "type": "string", "value": "proj"},
    {"path": "sys/description", "type": "string", "value": "The team's project"},
    {"path": "sys/tags", "type": "stringSet", "values": ["team-a", "vision"]},
    {"path": "sys/creation_time", "type": "datetime", "value": "2021-03-04T05:06:07.089Z"},
    {"path": "general/brief", "type": "string", "value": "classify birds"},
    {"path": "general/budget", "type": "float", "value": 1.5},
    {"path": "general/kickoff", "type": "datetime", "value": "1899-01-01T00:00:00.000Z"},  # out of 3.x range
    {"path": "reports/weekly", "type": "floatSeries", "skipped": "project-level attribute of this type is not exported"},
]


def _bundle(out: Path) -> Path:
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {
        "source": {"workspace": "legacy", "project": "proj", "key": "PROJ", "visibility": "priv",
                   "description": "The team's project", "url": "https://legacy.example/legacy/proj"},
        "project_attributes": PROJECT_ATTRIBUTES,
    })
    with EntityWriter(out, "run", "PROJ-1") as writer:
        writer.add_atom("sys/id", "string", "PROJ-1")
        writer.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.123Z")
        writer.add_float_points("m/x", [0, 1], [1.0, 2.0], [T0_MS, T0_MS + 1])
    return out


def test_project_metadata_lands_in_its_run_and_verify_checks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    from nmig.emulators.neptune3.store import DB_FILE

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "b")
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        result = CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/meta", "--api-token", target.api_token, "--quiet"])
        assert result.exit_code == 0, result.output
        neptune_query.set_api_token(target.api_token)
        row = nq.fetch_runs_table(project="demo/meta", runs=[PROJECT_RUN_ID], attributes=".*").iloc[0]
        assert row["legacy_project/key"] == "PROJ" and row["legacy_project/workspace"] == "legacy"
        assert row["legacy_project/description"] == "The team's project" and row["sys/description"] == "The team's project"
        assert row["legacy_project/url"] == "https://legacy.example/legacy/proj"
        assert row["legacy_sys/id"] == "PROJ" and set(row["legacy_sys/tags"]) == {"team-a", "vision"}
        assert row["legacy_sys/creation_time"] == dt.datetime(2021, 3, 4, 5, 6, 7, 89_000, tzinfo=dt.timezone.utc)
        assert row["general/brief"] == "classify birds" and row["general/budget"] == 1.5
        assert row["general/kickoff"] == "1899-01-01T00:00:00.000Z"
        verify_args = ["verify", str(bundle), "--project", "demo/meta", "--api-token", target.api_token, "--quiet"]
        verified = CliRunner().invoke(main, verify_args)
        assert verified.exit_code == 0, verified.output
        assert PROJECT_ITEM in verified.output
    with sqlite3.connect(tmp_path / "n3" / DB_FILE) as conn:
        changed = conn.execute("UPDATE attributes SET value = 'other' WHERE path = 'general/brief'").rowcount
    assert changed == 1
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        verified = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/meta", "--api-token",
                                             target.api_token, "--quiet", "--report", str(tmp_path / "v.json")])
    assert verified.exit_code == 1
    runs = {r["run"]: r for r in json.loads((tmp_path / "v.json").read_text())["runs"]}
    assert [(d["path"], d["what"]) for d in runs[PROJECT_ITEM]["differences"]] == [("general/brief", "config_differs")]
    doc = report(bundle)
    assert [i["path"] for i in items(doc, "project_attribute_not_written", PROJECT_ITEM)] == ["reports/weekly"]
    assert [i["path"] for i in items(doc, "datetime_out_of_range", PROJECT_ITEM)] == ["general/kickoff"]
    assert items(doc, "project_metadata", PROJECT_ITEM)


def test_a_bundle_without_project_metadata_gets_no_such_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importer_helpers import write_bundle

    monkeypatch.chdir(tmp_path)
    bundle = write_bundle(tmp_path / "b", {"R-1": lambda w: None})
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        assert CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/bare", "--api-token", target.api_token, "--quiet"]).exit_code == 0
        import neptune_query
        from neptune_query import runs as nq

        neptune_query.set_api_token(target.api_token)
        assert nq.list_runs(project="demo/bare") == ["R-1"]
