"""Errors the service reports through the client are attributed to run and path, the rest still imports,
the exit status is non-zero, and a re-run retries only what is not imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo


def test_service_errors_are_attributed_and_the_rest_imports(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    from neptune_scale import Run

    project = "demo/conflicts"
    from neptune_scale.projects import create_project

    create_project(project, api_token=neptune3.api_token)
    # The target already holds CONF-1 with params/lr as a string and m/text as a metric: the legacy types differ.
    with Run(run_id="CONF-1", project=project, api_token=neptune3.api_token, log_directory=tmp_path / "ns",
             enable_console_log_capture=False, source_tracking_config=None) as run:
        run.log_configs({"params/lr": "fast"})
        run.log_metrics({"m/text": 1.0}, step=0)

    def conflicting(w: Any) -> None:
        w.add_atom("params/lr", "float", 0.5)
        w.add_atom("params/ok", "int", 7)
        w.add_string_points("m/text", [1.0, 2.0], ["a", "b"], [T0_MS, T0_MS + 1])
        w.add_float_points("m/fine", np.arange(10.0), np.arange(10.0), T0_MS + np.arange(10))

    def clean(w: Any) -> None:
        w.add_float_points("m/fine", np.arange(10.0), np.arange(10.0), T0_MS + np.arange(10))

    bundle = write_bundle(tmp_path / "b", {"CONF-1": conflicting, "CLEAN-1": clean})
    result = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 1, result.output
    assert "CONF-1" in result.stderr
    doc = report(bundle)
    assert doc["runs"]["imported"] == ["CLEAN-1"] and doc["runs"]["failed"] == ["CONF-1"]
    failed = {i["path"]: i["detail"] for i in items(doc, "failed", "CONF-1")}
    # exact paths: the config error is narrowed by reading the configs back
    assert set(failed) == {"params/lr", "m/text"}, failed
    assert all(detail.startswith("NeptuneAttributeTypeMismatch: the attribute type") for detail in failed.values()), failed
    # the rest of the failing run still arrived
    fine = nq.fetch_metrics(project=project, runs=["CONF-1"], attributes=["m/fine"]).reset_index()
    assert fine["step"].tolist() == list(np.arange(10.0))
    assert nq.fetch_runs_table(project=project, runs=["CONF-1"], attributes=["params/ok"]).iloc[0]["params/ok"] == 7

    # A re-run skips the imported run and retries the failed one, which fails the same way.
    again = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet")
    assert again.exit_code == 1
    doc = report(bundle)
    assert doc["runs"]["already_imported"] == ["CLEAN-1"] and doc["runs"]["failed"] == ["CONF-1"]
    assert items(doc, "earlier_attempt_failed", "CONF-1")
    fine = nq.fetch_metrics(project=project, runs=["CONF-1"], attributes=["m/fine"]).reset_index()
    assert fine["step"].tolist() == list(np.arange(10.0))  # resumed: nothing sent twice
