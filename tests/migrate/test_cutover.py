"""The cut-over (issue 13 item 5): `nmig export --update` then `nmig import`, repeated while 2.x goes on, brings
every change into 3.x exactly once (new points, tags, configs, runs), reports runs trashed in 2.x (trashed in 3.x
only with --sync-trash) and the history 3.x cannot change; a kill during a re-sync followed by a re-run still
gives each point once. The 2.x source is changed between the passes through the legacy emulator's change
methods; everything goes through the real clients."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from nmig.cli import main
from nmig.emulators.http import EmulatorInfo
from nmig.emulators.legacy.backend import LegacyBackend
from nmig.emulators.legacy.server import LegacyEmulator, legacy_fault_plan

sys.path.insert(0, str(Path(__file__).parents[1]))
from state_view import state_runs  # noqa: E402

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
SOURCE, TARGET = "acme/vision", "demo/cutover"
T0 = 1_700_000_000_000


def _run(n: int, points: int) -> dict[str, Any]:
    return {"attributes": {
        "sys/name": {"type": "string", "value": f"run {n}"},
        "sys/tags": {"type": "stringSet", "values": ["base", f"t{n}"]},
        "params/lr": {"type": "float", "value": 0.01 * n},
        "metrics/loss": {"type": "floatSeries", "steps": [float(i) for i in range(points)],
                         "values": [1.0 / (i + n) for i in range(points)], "timestamps": [T0 + 10 * i for i in range(points)]},
        "logs/out": {"type": "stringSeries", "steps": [0.0, 1.0], "values": [f"a{n}", f"b{n}"], "timestamps": [T0, T0 + 1]},
    }}


def _fixture(points: int = 40) -> dict[str, Any]:
    return {"fixture_version": 1, "workspace": "acme", "projects": [
        {"name": "vision", "key": "VIS", "visibility": "priv", "runs": [_run(n, points) for n in (1, 2, 3)]},
    ]}


@contextlib.contextmanager
def _legacy(points: int = 40) -> Iterator[tuple[EmulatorInfo, LegacyBackend]]:
    emulator = LegacyEmulator(_fixture(points))
    with emulator.serve(legacy_fault_plan()) as info:
        yield info, emulator.backend


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"NEPTUNE_API_TOKEN": ""})


def _export(legacy: EmulatorInfo, bundle: Path, *more: str) -> None:
    done = _cli("export", "--project", SOURCE, "--out", str(bundle), "--api-token", legacy.api_token, "--quiet", *more)
    assert done.exit_code == 0, done.output


def _import(target: EmulatorInfo, bundle: Path, *more: str) -> Any:
    return _cli("import", str(bundle), "--project", TARGET, "--api-token", target.api_token, "--quiet", *more)


def _verify(target: EmulatorInfo, bundle: Path) -> Any:
    return _cli("verify", str(bundle), "--project", TARGET, "--api-token", target.api_token, "--quiet")


def _report(bundle: Path) -> dict[str, Any]:
    return json.loads(next(bundle.glob("import-report.*.json")).read_text(encoding="utf-8"))


def _cases(bundle: Path, case: str) -> list[tuple[str, str]]:
    return [(i["run"], i["path"]) for i in _report(bundle)["items"] if i["case"] == case]


def _loss(target: EmulatorInfo, run: str) -> tuple[list[float], list[float]]:
    import neptune_query
    from neptune_query import runs as nq

    neptune_query.set_api_token(target.api_token)
    frame = nq.fetch_metrics(project=TARGET, runs=[run], attributes=["metrics/loss"]).reset_index()
    return frame["step"].tolist(), frame["metrics/loss"].tolist()


def _table(target: EmulatorInfo, runs: list[str], attributes: list[str]) -> Any:
    import neptune_query
    from neptune_query import runs as nq

    neptune_query.set_api_token(target.api_token)
    return nq.fetch_runs_table(project=TARGET, runs=runs, attributes=attributes)


def _listed(target: EmulatorInfo) -> list[str]:
    import neptune_query
    from neptune_query import runs as nq

    neptune_query.set_api_token(target.api_token)
    return sorted(r for r in nq.list_runs(project=TARGET) if r.startswith("VIS-"))


def _change_source(backend: LegacyBackend) -> None:
    """What happens in 2.x between two passes: points logged, a tag, a changed config, a new run, a trashed run."""
    backend.append_points(f"{SOURCE}/VIS-1", "metrics/loss", [40.0, 41.0, 42.0], [0.5, 0.25, 0.125], [T0 + 400, T0 + 410, T0 + 420])
    backend.set_attributes(f"{SOURCE}/VIS-1", {"sys/tags": {"type": "stringSet", "values": ["base", "t1", "finished"]}})
    backend.set_attributes(f"{SOURCE}/VIS-2", {"params/lr": {"type": "float", "value": 0.5}})
    assert backend.add_run(SOURCE, _run(4, 10)) == "VIS-4"
    backend.trash(f"{SOURCE}/VIS-3")


def test_two_passes_bring_every_change_once_and_report_the_trashed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    bundle = tmp_path / "bundle"
    with _legacy() as (legacy, backend), serve_neptune3(data_dir=tmp_path / "n3") as target:
        _export(legacy, bundle)
        assert _import(target, bundle).exit_code == 0
        assert _verify(target, bundle).exit_code == 0

        _change_source(backend)
        _export(legacy, bundle, "--update")
        assert json.loads((bundle / "export.json").read_text())["trashed"] == {"run": ["VIS-3"]}
        second = _import(target, bundle)
        assert second.exit_code == 0, second.output
        assert "1 trashed in 2.x since exported: 1 left in 3.x (VIS-3" in second.output
        done = _verify(target, bundle)
        assert done.exit_code == 0, done.output

        steps, values = _loss(target, "VIS-1")
        assert steps == [float(i) for i in range(43)]  # the three new points once, nothing twice
        assert values[-3:] == [0.5, 0.25, 0.125]
        table = _table(target, ["VIS-1", "VIS-2"], ["sys/tags", "params/lr"])
        assert set(table.loc["VIS-1", "sys/tags"]) == {"base", "t1", "finished"}
        assert table.loc["VIS-2", "params/lr"] == 0.5
        assert _listed(target) == ["VIS-1", "VIS-2", "VIS-3", "VIS-4"]  # VIS-3 left in 3.x without --sync-trash
        assert sorted(r for r, _ in _cases(bundle, "re_synced")) == ["VIS-1", "VIS-2"]
        assert _cases(bundle, "trashed_in_source") == [("VIS-3", "")]
        assert "VIS-4" in _report(bundle)["runs"]["imported"]

        # a third pass with nothing changed in 2.x: nothing is re-synced
        _export(legacy, bundle, "--update")
        assert _import(target, bundle).exit_code == 0
        runs = _report(bundle)["runs"]
        assert runs["imported"] == [] and sorted(runs["already_imported"]) == ["VIS-1", "VIS-2", "VIS-3", "VIS-4"]

        # 2.x rewrites an early point of VIS-2 and logs more, and a tag of VIS-1 goes
        altered = _run(2, 45)["attributes"]["metrics/loss"]
        altered["values"][3] = 123.0
        backend.set_attributes(f"{SOURCE}/VIS-2", {"metrics/loss": altered})
        backend.set_attributes(f"{SOURCE}/VIS-1", {"sys/tags": {"type": "stringSet", "values": ["base", "finished"]}})
        _export(legacy, bundle, "--update")
        fourth = _import(target, bundle, "--sync-trash")
        assert fourth.exit_code == 0, fourth.output
        assert _cases(bundle, "history_changed") == [("VIS-2", "metrics/loss")]
        steps, values = _loss(target, "VIS-2")
        assert steps == [float(i) for i in range(45)] and values[3] == 1.0 / 5  # new points appended, old kept
        assert set(_table(target, ["VIS-1"], ["sys/tags"]).loc["VIS-1", "sys/tags"]) == {"base", "finished"}
        # --sync-trash: VIS-3 is in 3.x's trash, and verify expects it absent
        assert _listed(target) == ["VIS-1", "VIS-2", "VIS-4"]
        assert _cases(bundle, "trashed_in_target") == [("VIS-3", "")]
        checked = _verify(target, bundle)
        assert checked.exit_code == 1
        differing = [line for line in checked.output.splitlines() if line.endswith("DIFFERENCE(S)")]
        assert len(differing) == 1 and "VIS-2" in differing[0], checked.output
        assert "history_changed" in checked.output  # the report's item shown next to the difference


def _state(bundle: Path) -> dict[str, dict[str, Any]]:
    found = sorted(bundle.glob("import-state.*.json"))
    return state_runs(found[0]) if found else {}


@pytest.mark.slow
def test_a_kill_during_a_re_sync_then_a_re_run_gives_each_point_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    bundle = tmp_path / "bundle"
    with _legacy(points=200) as (legacy, backend), serve_neptune3(data_dir=tmp_path / "n3") as target:
        _export(legacy, bundle)
        assert _import(target, bundle).exit_code == 0
        # many new points in every run, so the second pass is long enough to be killed inside a re-sync
        more = np.arange(200, 120_200, dtype=np.float64)
        for n in (1, 2, 3):
            backend.append_points(f"{SOURCE}/VIS-{n}", "metrics/loss", more.tolist(), (more * n).tolist(),
                                  (T0 + 10 * more.astype(np.int64)).tolist())
        _export(legacy, bundle, "--update")
        command = [sys.executable, "-m", "nmig", "import", str(bundle), "--project", TARGET, "--api-token",
                   target.api_token, "--quiet", "--max-workers", "1"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        killed = False
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                runs = _state(bundle)
                if any(e["status"] == "started" and e.get("version") for e in runs.values()):  # a re-sync under way
                    time.sleep(0.5)
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                        killed = True
                    break
                time.sleep(0.02)
        finally:
            proc.communicate(timeout=120)
        assert killed, "the import finished before the kill; give it more points"
        again = _import(target, bundle)
        assert again.exit_code == 0, again.output
        assert {e["status"] for e in _state(bundle).values()} == {"imported"}
        for n in (1, 2, 3):
            steps, values = _loss(target, f"VIS-{n}")
            assert steps == [float(i) for i in range(120_200)], n  # none missing, none twice
            assert values[-1] == 120_199.0 * n
        done = _verify(target, bundle)
        assert done.exit_code == 0, done.output


def test_migrate_update_is_one_pass_of_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    bundle = tmp_path / "bundle"
    with _legacy() as (legacy, backend), serve_neptune3(data_dir=tmp_path / "n3") as target:
        def migrate(*more: str) -> Any:
            return CliRunner().invoke(main, [
                "migrate", "--from", SOURCE, "--to", TARGET, "--out", str(bundle), "--legacy-token", legacy.api_token,
                "--api-token", target.api_token, "--quiet", *more], env={"NEPTUNE_API_TOKEN": "", "NEPTUNE_LEGACY_API_TOKEN": ""})

        assert migrate().exit_code == 0
        _change_source(backend)
        assert migrate("--sync-trash").exit_code == 2  # --sync-trash needs --update
        done = migrate("--update", "--sync-trash")
        assert done.exit_code == 0, done.output
        assert "imported 3 (0 already imported, 0 failed)" in done.output, done.output  # VIS-1, VIS-2 re-synced, VIS-4 new
        assert _loss(target, "VIS-1")[0] == [float(i) for i in range(43)]
        assert _listed(target) == ["VIS-1", "VIS-2", "VIS-4"]
        assert sorted(r for r, _ in _cases(bundle, "re_synced")) == ["VIS-1", "VIS-2"]
        checked = _verify(target, bundle)
        assert checked.exit_code == 0, checked.output
