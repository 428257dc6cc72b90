"""`nmig import --models-as-runs` (issue 10, item 6): the sample project's model and its versions, exported
from the legacy emulator, arrive as runs with their attributes and files, tags naming the model and the
version, the stage as a field and the model's configs reachable from each version; `nmig verify
--models-as-runs` checks them, and without the flag they stay in the bundle, reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from importer_helpers import items, report

from nmig.cli import main

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.sample import sample_fixture

    bundle = tmp_path_factory.mktemp("models") / "bundle"
    with serve_legacy(sample_fixture(runs=2, points=50)) as legacy:
        result = CliRunner().invoke(main, ["export", "--project", "acme/vision", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet"])
    assert result.exit_code == 0, result.output
    return bundle


def test_models_and_versions_arrive_as_runs(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        args = ["--project", "demo/models", "--api-token", target.api_token, "--quiet"]
        result = CliRunner().invoke(main, ["import", str(exported), *args, "--models-as-runs"])
        assert result.exit_code == 0, result.output
        neptune_query.set_api_token(target.api_token)
        table = nq.fetch_runs_table(project="demo/models", attributes=".*")
        versions = ["VIS-CLS-1", "VIS-CLS-2", "VIS-CLS-3"]
        assert {"VIS-CLS", *versions} <= set(table.index)
        model = table.loc["VIS-CLS"]
        assert set(model["sys/tags"]) == {"model:VIS-CLS"} and model["model_registry/kind"] == "model"
        assert model["legacy_sys/name"] == "resnet-classifier"
        stages = {}
        for version_id in versions:
            row = table.loc[version_id]
            assert set(row["sys/tags"]) == {"model:VIS-CLS", f"model_version:{version_id}"}
            assert row["model_registry/model_id"] == "VIS-CLS" and row["model_registry/model_run_id"] == "VIS-CLS"
            assert row["model_registry/model/legacy_sys/name"] == "resnet-classifier"  # the model's own attribute
            assert row["model/binary"].size_bytes == 2048
            stages[version_id] = (row["model_registry/stage"], row["legacy_sys/stage"], row["validation/accuracy"])
        assert stages == {"VIS-CLS-1": ("archived", "archived", 0.81), "VIS-CLS-2": ("staging", "staging", 0.88),
                          "VIS-CLS-3": ("production", "production", 0.91)}
        verify_report = tmp_path / "v.json"
        verified = CliRunner().invoke(main, ["verify", str(exported), *args, "--models-as-runs", "--report", str(verify_report)])
        assert verified.exit_code == 0, verified.output
        doc = json.loads(verify_report.read_text())
        assert {r["run"] for r in doc["runs"]} >= {"VIS-CLS", *versions}
        assert doc["found_totals"]["models"] == doc["expected_totals"]["models"] == 4 and doc["not_imported"] == []
        # a version's file changed behind nmig's back: verify says so
        from neptune_scale import Run

        with Run(run_id="VIS-CLS-2", project="demo/models", api_token=target.api_token,
                 enable_console_log_capture=False, source_tracking_config=None) as run:
            run.log_configs({"model_registry/stage": "production"})
        wrong = CliRunner().invoke(main, ["verify", str(exported), *args, "--models-as-runs"])
        assert wrong.exit_code == 1 and "model_registry/stage" in wrong.output
    assert not items(report(exported), "not_imported")


def test_without_the_flag_models_stay_in_the_bundle_reported(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state.json"
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        args = ["--project", "demo/nomodels", "--api-token", target.api_token, "--quiet"]
        assert CliRunner().invoke(main, ["import", str(exported), *args, "--state", str(state)]).exit_code == 0
        neptune_query.set_api_token(target.api_token)
        assert not [r for r in nq.list_runs(project="demo/nomodels") if r.startswith("VIS-CLS")]
    doc: Any = json.loads(next(tmp_path.glob("state.report.json")).read_text())
    assert sorted(i["run"] for i in items(doc, "not_imported")) == ["VIS-CLS", "VIS-CLS-1", "VIS-CLS-2", "VIS-CLS-3"]
