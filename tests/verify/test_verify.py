"""`nmig verify` against a migrated 3.x target: green when untouched, and each kind of difference found when
the target is altered behind the importer's back (while stopped, through the 3.x emulator's test API, testing.Damage)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators.neptune3.testing import Damage

pytestmark = pytest.mark.timeout(120)


def by_run(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The checked runs by 3.x run id (the project-metadata run apart)."""
    from nmig.importer.plan import PROJECT_ITEM

    return {run["target_run_id"]: run for run in report["runs"] if run["run"] != PROJECT_ITEM}


def test_unaltered_target_matches(verify_altered: Any, target_ids: list[str]) -> None:
    result = verify_altered()
    assert result.exit_code == 0, result.output
    assert result.report["ok"] is True and result.differences() == []
    assert sorted(by_run(result.report)) == sorted(target_ids)
    assert all(run["status"] == "ok" for run in result.report["runs"])
    assert [run["checked"]["configs"] > 0 for run in result.report["runs"] if run["run"] == "(project)"] == [True]
    expected, found = result.report["expected_totals"], result.report["found_totals"]
    assert found == expected
    # 3 runs x (2 x 400-point metrics + 20 val + cpu/log samples + 2 stdout + 3 images)
    assert found["runs"] == 3 and found["points"] > 2400
    assert found["files"] == 3 * (1 + 2 + 3)  # weights, two source files, three images per run
    assert "All runs match." in result.output


def test_unaltered_target_matches_through_a_failing_service(verify_altered: Any) -> None:
    """5xx and 429 answers (retried by neptune-query, downloads retried by verify) change nothing."""
    result = verify_altered(fail_rate=0.1, throttle_rate=0.05, seed=11)
    assert result.exit_code == 0, result.output
    assert result.report["found_totals"] == result.report["expected_totals"]


def test_missing_run(verify_altered: Any, target_ids: list[str]) -> None:
    gone = target_ids[1]
    result = verify_altered(lambda damage: damage.delete_run(gone))
    assert result.exit_code == 1
    runs = by_run(result.report)
    assert runs[gone]["status"] == "missing"
    assert [d["what"] for d in runs[gone]["differences"]] == ["missing_run"]
    assert [r["status"] for i, r in runs.items() if i != gone] == ["ok", "ok"]
    assert result.report["found_totals"]["runs"] == 2 and result.report["expected_totals"]["runs"] == 3
    assert "MISSING" in result.output


def test_changed_config(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[1]
    result = verify_altered(lambda damage: damage.set_config(run, "parameters/lr", 0.5))
    assert result.exit_code == 1
    diffs = result.differences()
    assert [(d["path"], d["what"], d["expected"], d["found"]) for d in diffs] == [
        ("parameters/lr", "config_differs", 0.003, 0.5)
    ]
    assert "parameters/lr: config_differs: expected 0.003, found 0.5" in result.output


def test_runs_checked_at_once_give_the_same_table_report_and_exit(verify_altered: Any, target_ids: list[str]) -> None:
    """--max-workers changes how many runs are read at once, never what verify says: the same table, report
    and exit status with one worker as with one per run (and a faulty service, so the runs finish out of order)."""

    def damage(target: Damage) -> None:
        target.delete_run(target_ids[0])
        target.set_config(target_ids[2], "parameters/lr", 0.5)

    results = [verify_altered(damage, args=["--max-workers", str(n)], fail_rate=0.1, throttle_rate=0.05, seed=n)
               for n in (1, 4)]
    assert [r.exit_code for r in results] == [1, 1]
    assert results[0].output == results[1].output
    assert results[0].report == results[1].report
    runs = by_run(results[1].report)
    assert [runs[i]["status"] for i in target_ids] == ["missing", "ok", "differs"]
    assert results[1].report["found_totals"]["runs"] == 2


def test_changed_config_type_and_tags(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[0]
    def damage(target: Damage) -> None:
        target.set_config(run, "parameters/batch_size", 64.0)
        target.remove_member(run, "sys/tags", "sweep")

    result = verify_altered(damage)
    assert result.exit_code == 1
    whats = {d["path"]: d["what"] for d in result.differences()}
    assert whats == {"parameters/batch_size": "wrong_type", "sys/tags": "tags_differ"}


def test_missing_point(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[2]
    result = verify_altered(lambda damage: damage.delete_point(run, "train/loss", 123))
    assert result.exit_code == 1
    diffs = result.differences()
    assert [(d["path"], d["what"]) for d in diffs] == [("train/loss", "missing_points")]
    assert "123" in diffs[0]["detail"] and diffs[0]["expected"].startswith("1 ")
    assert result.report["found_totals"]["points"] == result.report["expected_totals"]["points"] - 1


def test_points_across_read_windows(verify_altered: Any, target_ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Long series are read window by window: a point missing right after a window edge and one the target
    holds between two windows' expected steps are both found."""
    from nmig.importer import verify_series

    monkeypatch.setattr(verify_series, "WINDOW_POINTS", 100)
    run = target_ids[0]

    def damage(target: Damage) -> None:
        target.delete_point(run, "train/accuracy", 100)
        # a stray point at step 199.5: between the last expected step of one window and the first of the next
        target.set_point(run, "train/accuracy", 199, to_step=199.5)

    result = verify_altered(damage)
    assert result.exit_code == 1
    diffs = {d["what"]: d for d in result.differences()}
    assert set(diffs) == {"missing_points", "unexpected_points"}
    assert "at step(s) 100" in diffs["missing_points"]["detail"]
    assert "at step(s) 199.5" in diffs["unexpected_points"]["detail"]
    assert all(d["path"] == "train/accuracy" for d in diffs.values())


def test_shifted_timestamp(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[1]
    result = verify_altered(lambda damage: damage.set_point(run, "logs/train", 12, shift_ms=1))
    assert result.exit_code == 1
    diffs = result.differences()
    assert [(d["path"], d["what"]) for d in diffs] == [("logs/train", "timestamp_differs")]
    expected = dt.datetime.fromisoformat(diffs[0]["expected"].replace("Z", "+00:00"))
    found = dt.datetime.fromisoformat(diffs[0]["found"].replace("Z", "+00:00"))
    assert found - expected == dt.timedelta(milliseconds=1)


def test_changed_value_of_a_metric(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[1]

    def damage(target: Damage) -> None:
        target.set_point(run, "val/loss", 3, value=target.point_value(run, "val/loss", 3) + 1e-9)

    result = verify_altered(damage)
    assert result.differing() == [("val/loss", "value_differs")]


def test_changed_file_and_file_series_point(verify_altered: Any, target_ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.importer import verify_series

    monkeypatch.setattr(verify_series, "DOWNLOAD_CHUNK_BYTES", 1)  # every file downloaded, hashed, deleted alone
    run = target_ids[2]

    def corrupt(damage: Damage) -> None:
        for blob in (damage.blob(run, "model/weights"), damage.blob(run, "eval/confusion", step=1)):
            content = bytearray(blob.read_bytes())
            content[len(content) // 2] ^= 0xFF  # same size, other bytes
            blob.write_bytes(bytes(content))

    result = verify_altered(corrupt)
    assert result.exit_code == 1
    diffs = sorted((d["path"], d["what"]) for d in result.differences())
    assert diffs == [("eval/confusion", "file_hash_differs"), ("model/weights", "file_hash_differs")]


def test_missing_file(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[0]
    result = verify_altered(lambda damage: damage.delete_attribute(run, "source_code/files/train.py"))
    assert result.differing() == [("source_code/files/train.py", "missing_file")]


def test_missing_series(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[0]
    result = verify_altered(lambda damage: damage.delete_attribute(run, "val/loss"))
    assert result.exit_code == 1
    diffs = result.differences()
    assert [(d["path"], d["what"], d["expected"]) for d in diffs] == [("val/loss", "missing_series", "20 point(s)")]


def test_file_that_cannot_be_downloaded(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[1]
    result = verify_altered(lambda damage: damage.blob(run, "source_code/files/configs/base.yaml").unlink())
    assert result.differing() == [("source_code/files/configs/base.yaml", "file_not_downloadable")]


def test_unexpected_attribute(verify_altered: Any, target_ids: list[str]) -> None:
    """Something the bundle never had (say, the importing machine's git info) is a difference."""
    run = target_ids[0]
    result = verify_altered(lambda damage: damage.add_config(run, "source_code/diff", "x"))
    assert result.differing() == [("source_code/diff", "unexpected_attribute")]


def test_sample_checks_chosen_points_only(verify_altered: Any, target_ids: list[str]) -> None:
    run = target_ids[2]
    # step 1 of a 400-point series is not among 5 evenly spread samples (0, 100, 200, 299, 399); step 399 is

    def damage(target: Damage) -> None:
        target.delete_point(run, "train/loss", 1)
        target.set_point(run, "train/accuracy", 399, value=-1.0)

    result = verify_altered(damage, args=["--sample", "5"])
    assert result.differing() == [("train/accuracy", "value_differs")]
    assert result.report["sample"] == 5
    assert "sampled: 5 points per series" in result.output


def test_runs_selection(verify_altered: Any, target_ids: list[str]) -> None:
    result = verify_altered(lambda damage: damage.delete_run(target_ids[1]), args=["--runs", "VIS-1"])
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in result.report["runs"]] == ["VIS-1"]


def test_bad_input(tmp_path: Path, migrated: Any) -> None:
    from click.testing import CliRunner

    from nmig.cli import main

    runner = CliRunner()
    not_bundle = runner.invoke(main, ["verify", str(tmp_path), "--project", "demo/x", "--api-token", "x"])
    assert not_bundle.exit_code == 2 and "Traceback" not in not_bundle.output
    assert not_bundle.output.startswith("nmig: error:") and len(not_bundle.output.strip().splitlines()) == 1
    no_token = runner.invoke(main, ["verify", str(migrated.bundle), "--project", "demo/vision"], env={"NEPTUNE_API_TOKEN": ""})
    assert no_token.exit_code == 2 and "no API token" in no_token.output


def test_unknown_target_project(tmp_path: Path, migrated: Any) -> None:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.neptune3 import serve_neptune3

    with serve_neptune3() as target:
        result = CliRunner().invoke(main, ["verify", str(migrated.bundle), "--project", "demo/nope", "--api-token", target.api_token, "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("nmig: error: cannot read project demo/nope") and "Traceback" not in result.output
    assert target.api_token not in result.output


def test_value_equality_rules() -> None:
    from nmig.importer.verify import same_value
    from nmig.importer.verify_series import sample_positions

    assert same_value(math.nan, math.nan) and same_value(math.inf, float("inf")) and not same_value(math.inf, -math.inf)
    assert not same_value(1.0, 1.0000001) and same_value(3, 3) and not same_value(3, 3.5)
    assert same_value(True, True) and not same_value(True, 1) and not same_value(1, True)
    moment = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
    # 3.x keeps milliseconds; neptune-query reads them through a float, a microsecond either side
    assert same_value(moment, moment.replace(microsecond=123001)) and same_value(moment, moment.replace(microsecond=122999))
    assert not same_value(moment, moment.replace(microsecond=124000)) and not same_value(moment, moment.replace(microsecond=122000))
    assert same_value(moment, moment.replace(tzinfo=None))  # a naive time from the client is UTC
    assert same_value(["a", "b"], {"b", "a"}) and not same_value(["a"], {"a", "b"})
    assert sample_positions(400, 5) == {0, 100, 200, 299, 399}
    assert sample_positions(3, 5) == {0, 1, 2} and sample_positions(10, 1) == {9}


def test_damage_that_changes_nothing_is_refused(migrated: Any, target_ids: list[str], tmp_path: Path) -> None:
    """The emulator's test API refuses a damage that would change nothing, so no test proves nothing."""
    import shutil

    data_dir = tmp_path / "copy"
    shutil.copytree(migrated.data_dir, data_dir)
    with pytest.raises(LookupError, match="no project"):
        Damage(data_dir, "demo/none")
    with Damage(data_dir, "demo/vision") as damage:
        with pytest.raises(LookupError, match="nothing to change"):
            damage.delete_point(target_ids[0], "train/loss", 123.5)  # no such step
        with pytest.raises(LookupError, match="no attribute"):
            damage.set_config(target_ids[0], "no/such/path", 1)
        with pytest.raises(LookupError, match="no run"):
            damage.delete_run("no-such-run")
        assert damage.point_value(target_ids[0], "train/loss", 123) is not None
