"""What the import deliberately changes (3.x limits, documented rules) is expected by `nmig verify`, not a
difference: a hand-made bundle hitting the limits, imported, then verified green with the adjustments shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nmig.cli import main

pytestmark = pytest.mark.timeout(120)

T0 = 1_700_000_000_000


def _bundle(out: Path) -> Path:
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": {"workspace": "legacy", "project": "limits"}})
    with EntityWriter(out, "run", "LIM-1") as writer:
        writer.add_atom("sys/id", "string", "LIM-1")
        writer.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.123Z")
        writer.add_atom("sys/custom_run_id", "string", "team/run:1")  # "/" is not allowed in a 3.x run id
        writer.add_atom("params/" + "p" * 1100, "float", float("inf"))  # path over 1,024 bytes
        writer.add_atom("params/nan", "float", float("nan"))
        # two points on one step (the second is dropped), a decreasing timestamp (raised), a step beyond 1e12
        writer.add_float_points("m/loss", [0.0, 1.0, 1.0, 2.0, 3.0, 1e12], [0.5, 0.4, 0.39, float("nan"), 0.2, 0.1],
                                [T0, T0 + 10, T0 + 20, T0 + 5, T0 + 40, T0 + 50])
        writer.add_float_points("m/beyond", [2e12, 3e12], [1.0, 2.0], [T0, T0 + 1])  # every point dropped: no series
        writer.add_string_points("logs/big", [0.0, 1.0], ["x" * (1024 * 1024 + 10), "ok"], [T0, T0 + 1])
    return out


def _verify_with_a_refused_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sys_id: str, fill: Callable[[Any], None],
    before: dict[str, Callable[[Any], None]] | None = None,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The limits bundle plus the runs `before` writes and a run `fill` writes, which `nmig import` must refuse
    (exit 1); then `nmig verify`, which must fail (exit 1). Returns verify's result and its report's runs by
    legacy id."""
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.schema import EntityWriter

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "bundle")
    for other_id, other_fill in (before or {}).items():
        with EntityWriter(bundle, "run", other_id) as writer:
            other_fill(writer)
    with EntityWriter(bundle, "run", sys_id) as writer:
        fill(writer)
    report = tmp_path / "verify.json"
    with serve_neptune3(data_dir=tmp_path / "neptune3") as target:
        imported = CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet"])
        assert imported.exit_code == 1, imported.output
        result = CliRunner().invoke(
            main, ["verify", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet", "--report", str(report)]
        )
    assert result.exit_code == 1
    return result, {run["run"]: run for run in json.loads(report.read_text(encoding="utf-8"))["runs"]}


def test_adjusted_items_are_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "bundle")
    report = tmp_path / "verify.json"
    with serve_neptune3(data_dir=tmp_path / "neptune3") as target:
        imported = CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet"])
        assert imported.exit_code == 0, imported.output
        result = CliRunner().invoke(
            main, ["verify", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet", "--report", str(report)]
        )
        assert result.exit_code == 0, result.output
        doc = json.loads(report.read_text(encoding="utf-8"))
        (run,) = doc["runs"]
        assert run["target_run_id"] == "team_run:1~LIM-1" and run["status"] == "ok"
        cases = {item["case"] for item in run["adjusted_by_import"]}
        assert {"run_id_adjusted", "path_shortened", "step_collision", "timestamp_decreasing", "step_out_of_range",
                "string_value_too_long"} <= cases
        assert run["checked"]["points"] == 4 + 2  # 6 legacy loss points less the dropped two; both log lines
        assert "step_collision" in result.output

        # the expectations come from the importer's own plan and limits, not from the report's text
        without = CliRunner().invoke(
            main, ["verify", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet",
                   "--import-report", str(tmp_path / "no-such-report.json")]
        )
        assert without.exit_code == 0, without.output
        assert "adjusted by the import" not in without.output

    # ... and they are exact: the second point at step 1 (the one the rule drops) in the target is a difference
    from nmig.emulators.neptune3.testing import Damage

    with Damage(tmp_path / "neptune3", "demo/limits") as damage:
        damage.set_point("team_run:1~LIM-1", "m/loss", 1, value=0.39)
    with serve_neptune3(data_dir=tmp_path / "neptune3") as target:
        altered = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/limits", "--api-token", target.api_token, "--quiet"])
    assert altered.exit_code == 1
    assert "m/loss: value_differs: expected 0.4, found 0.39" in altered.output


def test_incomplete_run_in_the_bundle_is_not_a_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run the export could not finish is not in 3.x: the migration is not complete, so verify fails."""

    def unfinished(writer: Any) -> None:
        writer.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.123Z")
        writer.error("train/loss", "the 2.x service kept failing")

    result, runs = _verify_with_a_refused_run(tmp_path, monkeypatch, "LIM-2", unfinished)
    assert runs["LIM-1"]["status"] == "ok"
    assert runs["LIM-2"]["status"] == "not_importable" and "the 2.x service kept failing" in runs["LIM-2"]["note"]
    assert "NOT IMPORTED" in result.output


def test_what_the_import_report_says_went_wrong_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two legacy runs with one custom run id as it stands (2.x resumes a run by its custom id, so only a
    hand-made bundle has them): the import refuses the second; verify fails it and says why."""

    def same_custom_id(lr: float) -> Callable[[Any], None]:
        def fill(writer: Any) -> None:
            writer.add_atom("sys/creation_time", "datetime", "2024-05-02T12:00:00.000Z")
            writer.add_atom("sys/custom_run_id", "string", "baseline")
            writer.add_atom("params/lr", "float", lr)

        return fill

    result, runs = _verify_with_a_refused_run(tmp_path, monkeypatch, "LIM-4", same_custom_id(0.5), {"LIM-3": same_custom_id(0.1)})
    assert runs["LIM-1"]["status"] == "ok" and runs["LIM-3"]["status"] == "ok"
    assert runs["LIM-4"]["status"] == "differs"
    assert ("params/lr", "config_differs") in {(d["path"], d["what"]) for d in runs["LIM-4"]["differences"]}
    assert runs["LIM-4"]["note"].startswith("the import report says: (run): refused:")
    assert "the import report says" in result.output
