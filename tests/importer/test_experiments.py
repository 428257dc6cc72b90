"""Experiment heads by legacy creation time, whatever the import order (issue 10, item 2): runs sharing a name
form one 3.x experiment headed by the latest-created (ties by id), under 4 workers, with the head imported
first, and after an older run is resumed; the legacy default name "Untitled" merges nothing; --experiments none
makes plain runs. `nmig verify` checks the heads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.cli import main
from nmig.emulators.neptune3 import serve_neptune3
from nmig.importer.experiments import experiment_name, head_key, heads

pytestmark = pytest.mark.timeout(300)

CREATED = {
    "E-1": "2024-01-01T00:00:00.000Z", "E-2": "2024-03-01T00:00:00.000Z", "E-3": "2024-02-01T00:00:00.000Z",
    "E-9": "2024-01-05T00:00:00.000Z", "E-10": "2024-01-05T00:00:00.000Z",  # a tie: the larger id heads
    "U-1": "2024-01-01T00:00:00.000Z", "U-2": "2024-01-02T00:00:00.000Z",
}
NAMES = {"E-1": "exp-a", "E-2": "exp-a", "E-3": "exp-a", "E-9": "exp-b", "E-10": "exp-b", "U-1": "Untitled", "U-2": "Untitled"}


def _named(name: str) -> Any:
    def fill(w: Any) -> None:
        w.add_atom("sys/name", "string", name)
        w.add_float_points("m/x", [0, 1], [1.0, 2.0], [T0_MS, T0_MS + 1])

    return fill


def _bundle(out: Path) -> Path:
    return write_bundle(out, {sys_id: _named(name) for sys_id, name in NAMES.items()}, created=CREATED)


def test_head_rule_on_plain_data() -> None:
    import datetime as dt

    t = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert heads([("a", t, "VIS-9"), ("a", t, "VIS-10"), ("b", t, "VIS-1"), ("b", None, "VIS-2")]) == {"a": "VIS-10", "b": "VIS-1"}
    assert head_key(t, "VIS-10") > head_key(t, "VIS-9")
    assert experiment_name("Untitled", "by-name")[0] is None and experiment_name("x", "by-name") == ("x", None)
    assert experiment_name("x", "none") == (None, None)


def _import(bundle: Path, token: str, project: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["import", str(bundle), "--project", project, "--api-token", token, "--quiet", *args])


def _verify(bundle: Path, token: str, project: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["verify", str(bundle), "--project", project, "--api-token", token, "--quiet", *args])


def _experiments(nq: Any, project: str) -> dict[str, tuple[str, bool]]:
    table = nq.fetch_runs_table(project=project, attributes=["sys/experiment/name", "sys/experiment/is_head"])
    out = {}
    for run_id, row in table.iterrows():
        name = row.get("sys/experiment/name")
        out[str(run_id)] = (name if isinstance(name, str) else "", bool(row.get("sys/experiment/is_head") is True))
    return out


def test_heads_by_creation_time_whatever_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "b")
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        neptune_query.set_api_token(target.api_token)
        # the heads first, alone; then the rest under 4 workers (the older runs are created after their heads)
        assert _import(bundle, target.api_token, "demo/exp", "--runs", "E-2", "--runs", "E-10").exit_code == 0
        result = _import(bundle, target.api_token, "demo/exp", "--max-workers", "4")
        assert result.exit_code == 0, result.output
        want = {"E-1": ("exp-a", False), "E-2": ("exp-a", True), "E-3": ("exp-a", False),
                "E-9": ("exp-b", False), "E-10": ("exp-b", True), "U-1": ("", False), "U-2": ("", False)}
        assert _experiments(nq, "demo/exp") == want
        assert _verify(bundle, target.api_token, "demo/exp").exit_code == 0
        # an older run resumed later (as after a kill) takes the name back in 3.x; the import gives it back
        again = _import(bundle, target.api_token, "demo/exp", "--runs", "E-1", "--state", str(tmp_path / "s.json"))
        assert again.exit_code == 0, again.output
        assert _experiments(nq, "demo/exp") == want
        # verify tells a wrong head: make E-1 the head behind nmig's back
        from neptune_scale import Run

        with Run(run_id="E-1", project="demo/exp", api_token=target.api_token, experiment_name="exp-a",
                 enable_console_log_capture=False, source_tracking_config=None):
            pass
        wrong = _verify(bundle, target.api_token, "demo/exp", "--report", str(tmp_path / "v.json"))
        assert wrong.exit_code == 1 and "experiment_head_differs" in wrong.output
    doc = report(bundle)
    assert {i["run"] for i in items(doc, "experiment_not_named")} == {"U-1", "U-2"}
    assert {i["run"] for i in items(doc, "experiment_head")} == {"E-2", "E-10"}


def test_experiments_none_makes_plain_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "b")
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        neptune_query.set_api_token(target.api_token)
        assert _import(bundle, target.api_token, "demo/plain", "--experiments", "none").exit_code == 0
        assert all(name == "" for name, _ in _experiments(nq, "demo/plain").values())
        legacy = nq.fetch_runs_table(project="demo/plain", attributes=["legacy_sys/name"])
        assert legacy.loc["E-2", "legacy_sys/name"] == "exp-a"
        assert _verify(bundle, target.api_token, "demo/plain", "--experiments", "none").exit_code == 0
        # verified as by-name, the runs lack their experiments
        assert _verify(bundle, target.api_token, "demo/plain").exit_code == 1
