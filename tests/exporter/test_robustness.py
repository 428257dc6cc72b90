"""Killing the export at several points and re-running, or exporting through a server failing 10% of its
requests, gives a bundle identical in content to a clean export; an attribute that stays unreadable leaves
its run incomplete with a non-zero exit, and a re-run completes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exporter_helpers import PROJECT, WORKSPACE, digests, export, serving, standard_fixture

from nmig.emulators.http import EmulatorInfo
from nmig.schema import KIND_FOLDERS


def _committed(out: Path) -> int:
    return sum(len(list((out / f).iterdir())) for f in KIND_FOLDERS.values() if (out / f).is_dir())


def _partial_work(out: Path) -> bool:
    partial = out / ".partial"
    return partial.is_dir() and any(p.is_dir() for p in partial.iterdir())


def _export_process(info: EmulatorInfo, out: Path) -> subprocess.Popen[bytes]:
    # A local time zone far from UTC (-3:30): the bundle must still equal the in-process clean export, since
    # timestamps go from the API's epoch milliseconds to UTC without ever passing through local time.
    env = {**os.environ, "NEPTUNE_API_TOKEN": info.api_token, **info.env, "TZ": "America/St_Johns"}
    command = [sys.executable, "-m", "nmig", "export", "--project", f"{WORKSPACE}/{PROJECT}", "--out", str(out)]
    return subprocess.Popen(
        [*command, "--include-trashed", "--quiet", "--max-workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            if process.poll() is not None:
                return  # finished before the kill point: the re-run then has less to do, still a valid case
            if time.monotonic() > deadline:
                pytest.fail("the export never reached the kill point")
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


@pytest.mark.slow
def test_killed_at_several_points_then_rerun_equals_clean(
    standard_server: EmulatorInfo, clean_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    kill_points: list[Callable[[], bool]] = [
        lambda: _partial_work(out) and _committed(out) == 0,  # inside the first entity
        lambda: _committed(out) >= 3,
        lambda: _committed(out) >= 6 and _partial_work(out),  # between commits, with work in flight
    ]
    killed_with: list[int] = []
    for condition in kill_points:
        process = _export_process(standard_server, out)
        _kill_when(process, condition)
        killed_with.append(_committed(out))
    assert killed_with[0] < len(digests(clean_bundle))  # the kills really interrupted the export
    final = _export_process(standard_server, out)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert digests(out) == digests(clean_bundle)
    assert standard_server.api_token not in (out / "export.log").read_text("utf-8")


@pytest.mark.slow
def test_ten_percent_failing_server_gives_the_same_bundle(tmp_path: Path) -> None:
    # Both servers on the same port: the bundle records source URLs, which name it.
    with serving(standard_fixture()) as info:
        clean = export(info, tmp_path / "clean", include_trashed=True)
        port = int(info.url.rsplit(":", 1)[1])
    with serving(standard_fixture(), port=port, fail_rate=0.10, throttle_rate=0.02, seed=11) as info:
        result = export(info, tmp_path / "bundle", include_trashed=True)
    # Also faulting what the client itself never retries (token exchange and refresh, listings, zip
    # preparation): our own retries cover those.
    with serving(standard_fixture(), port=port, fail_rate=0.10, seed=5, fault_unretried=True) as info:
        unretried = export(info, tmp_path / "unretried", include_trashed=True)
    assert not clean.failed and not result.failed and not unretried.failed, (result.failed, unretried.failed)
    assert len(digests(tmp_path / "bundle")) == 10
    assert digests(tmp_path / "bundle") == digests(tmp_path / "clean") == digests(tmp_path / "unretried")


def test_export_outlives_short_lived_access_tokens(tmp_path: Path) -> None:
    with serving(standard_fixture(), token_ttl=1) as info:
        result = export(info, tmp_path / "bundle", include_trashed=True, max_workers=2)
    assert not result.failed, result.failed
    assert len(digests(tmp_path / "bundle")) == 10


def test_unreadable_attribute_leaves_run_incomplete_then_rerun_completes(
    standard_server: EmulatorInfo,
    clean_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Any],
) -> None:
    from nmig.exporter import source

    real_page = source.LegacySource.series_page

    def failing_page(self: source.LegacySource, kind: str, container_id: str, path: str, offset: int, limit: int, skip_to_step: float | None = None):  # type: ignore[no-untyped-def]
        if path == "metrics/loss" and container_id == failing_container:
            raise ConnectionError("connection reset by the test")
        return real_page(self, kind, container_id, path, offset, limit, skip_to_step)

    failing_container = ""
    with source.LegacySource(f"{WORKSPACE}/{PROJECT}", standard_server.api_token, quiet=True) as probe:
        failing_container = next(r.container_id for r in probe.list_entities("run", None, True) if r.sys_id == "VIS-3")
    monkeypatch.setattr(source.LegacySource, "series_page", failing_page)
    monkeypatch.setattr("nmig.exporter.entity.time.sleep", lambda s: None)  # our back-off, not the server's
    out = tmp_path / "bundle"
    result = export(standard_server, out, include_trashed=True)
    assert [(ref.sys_id if ref else None) for ref, _, _ in result.failed] == ["VIS-3"]
    reason = result.failed[0][2]
    assert "metrics/loss" in reason and "connection reset by the test" in reason
    assert not (out / "runs" / "VIS-3" / "COMPLETE").exists()
    assert "INCOMPLETE" in (out / "export.log").read_text("utf-8")
    # the command says which run and why, and exits 1 (finished with failures)
    cli = run_cli(
        "export", "--api-token", standard_server.api_token, "--project", f"{WORKSPACE}/{PROJECT}",
        "--out", str(tmp_path / "cli"), "--include-trashed", "--quiet",
    )
    assert cli.exit_code == 1, cli.output
    assert "incomplete: run VIS-3:" in cli.stderr and "metrics/loss" in cli.stderr
    assert "re-run the same command" in cli.stderr and "Traceback" not in cli.output
    monkeypatch.setattr(source.LegacySource, "series_page", real_page)
    again = export(standard_server, out, include_trashed=True)
    assert [r.sys_id for r in again.exported] == ["VIS-3"] and not again.failed
    assert digests(out) == digests(clean_bundle)


def _wide_fixture() -> dict[str, Any]:
    from exporter_helpers import T0, make_project

    attributes: dict[str, Any] = {}
    for i, points in enumerate([0, 1, 999, 1_000, 2_500] * 6):
        attributes[f"metrics/m{i:02d}"] = {
            "type": "floatSeries",
            "steps": [float(s) for s in range(points)],
            "values": [i + s / 7 for s in range(points)],
            "timestamps": [T0 + s for s in range(points)],
        }
    for i in range(3):
        attributes[f"logs/l{i}"] = {"type": "stringSeries", "steps": [0.0, 1.0], "values": [f"a{i}", "b"],
                                    "timestamps": [T0, T0 + 1]}
    return make_project([{"attributes": attributes}], models=False)


def test_first_pages_requested_ahead_keep_the_bundle_and_the_errors_where_they_belong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of many series, whose first pages are requested while earlier series page: the same bundle as
    strictly one series after another, on a clean and on a 10%-failing server; a series whose first page cannot
    be read fails alone, named, while the ones around it arrive."""
    from nmig.exporter import entity, source

    with serving(_wide_fixture()) as info:
        monkeypatch.setattr(entity, "SERIES_AHEAD", 0)
        one_by_one = export(info, tmp_path / "one_by_one")
        port = int(info.url.rsplit(":", 1)[1])
    monkeypatch.setattr(entity, "SERIES_AHEAD", 4)
    with serving(_wide_fixture(), port=port, fail_rate=0.10, seed=3) as info:
        ahead = export(info, tmp_path / "ahead")
        real_page = source.LegacySource.series_page

        def failing_page(self: source.LegacySource, kind: str, container_id: str, path: str, offset: int, limit: int, skip_to_step: float | None = None):  # type: ignore[no-untyped-def]
            if path == "metrics/m12" and offset == 0:
                raise ConnectionError("first page lost by the test")
            return real_page(self, kind, container_id, path, offset, limit, skip_to_step)

        monkeypatch.setattr(source.LegacySource, "series_page", failing_page)
        monkeypatch.setattr("nmig.exporter.entity.time.sleep", lambda s: None)  # our back-off only
        broken = export(info, tmp_path / "broken")
    assert not one_by_one.failed and not ahead.failed, ahead.failed
    assert digests(tmp_path / "ahead") == digests(tmp_path / "one_by_one")
    assert [(ref.sys_id if ref else None) for ref, _, _ in broken.failed] == ["VIS-1"]
    manifest = json.loads((tmp_path / "broken" / "runs" / "VIS-1" / "manifest.json").read_text("utf-8"))
    assert [e["path"] for e in manifest["errors"]] == ["metrics/m12"]
    assert "first page lost by the test" in manifest["errors"][0]["message"]
    points = {a["path"]: a.get("points") for a in manifest["attributes"]}
    assert points["metrics/m11"] == 1 and points["metrics/m13"] == 1_000 and points["logs/l2"] == 2
    assert points["metrics/m12"] == 0  # declared, no points: the error above says why


def _long_series(points: int) -> dict[str, Any]:
    steps = range(points)
    return {"type": "floatSeries", "steps": [float(s) for s in steps],
            "values": [((s * 7919) % 1009) / 7.0 for s in steps], "timestamps": [1_700_000_000_000 + s for s in steps]}


def _record_spills(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The spool files of pages held on disk from now on (entity.PageHold), as they are made."""
    from nmig.exporter import entity

    held: list[Path] = []
    real_hold = entity.PageHold.hold

    def hold(self: entity.PageHold, page: Any) -> Any:
        kept = real_hold(self, page)
        if not isinstance(kept, type(page)):
            held.append(kept.path)
        return kept

    monkeypatch.setattr(entity.PageHold, "hold", hold)
    return held


def test_pages_answered_ahead_of_their_turn_are_held_then_written_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long series paged with many pages ahead while some are retried (a 30%-failing server), the answered
    ones kept on disk past a tiny memory budget: the same bundle as one page at a time on a clean server, and
    no held page left behind."""
    from exporter_helpers import make_project

    from nmig.exporter import entity

    fixture = make_project([{"attributes": {"train/loss": _long_series(23_456), "train/acc": _long_series(23_456)}}], models=False)
    with serving(fixture) as info:
        monkeypatch.setattr(entity, "PAGES_IN_FLIGHT", 1)
        monkeypatch.setattr(entity, "PAGES_AHEAD", 1)
        one_at_a_time = export(info, tmp_path / "one", larger_page_size=None)
        port = int(info.url.rsplit(":", 1)[1])
    monkeypatch.setattr(entity, "PAGES_IN_FLIGHT", 4)
    monkeypatch.setattr(entity, "PAGES_AHEAD", 64)
    monkeypatch.setattr(entity, "PAGES_HELD_BYTES", 30_000)  # about one page of 1,000 points in memory
    held = _record_spills(monkeypatch)
    with serving(fixture, port=port, fail_rate=0.3, seed=13) as info:
        ahead = export(info, tmp_path / "ahead", larger_page_size=None)
    assert not one_at_a_time.failed and not ahead.failed, ahead.failed
    assert held, "no page was held on disk: the test did not reach the spill"
    assert not any(path.exists() for path in held)
    assert digests(tmp_path / "ahead") == digests(tmp_path / "one")


def test_files_downloaded_ahead_keep_the_bundle_and_the_errors_where_they_belong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of more files than are downloaded ahead at once, between series: the same bundle as one file at
    its turn, on a clean and on a 10%-failing server; a file that cannot be downloaded fails alone, named."""
    from exporter_helpers import T0, make_project

    from nmig.exporter import entity, source

    attributes: dict[str, Any] = {
        f"files/f{i}": {"type": "file", "ext": "bin", "content_text": f"file {i} " * (100 + 997 * i)} for i in range(7)
    }
    attributes["metrics/loss"] = {"type": "floatSeries", "steps": [0.0, 1.0, 2.0], "values": [3.0, 2.0, 1.0],
                                  "timestamps": [T0, T0 + 1, T0 + 2]}
    fixture = make_project([{"attributes": attributes}], models=False)
    with serving(fixture) as info:
        monkeypatch.setattr(entity, "FILES_AHEAD", 0)
        at_turn = export(info, tmp_path / "at_turn")
        port = int(info.url.rsplit(":", 1)[1])
    monkeypatch.setattr(entity, "FILES_AHEAD", 4)
    with serving(fixture, port=port, fail_rate=0.10, seed=3) as info:
        ahead = export(info, tmp_path / "ahead")
        real_open = source.LegacySource.open_file

        def failing_open(self: source.LegacySource, container_id: str, path: str):  # type: ignore[no-untyped-def]
            if path == "files/f5":
                raise ConnectionError("download lost by the test")
            return real_open(self, container_id, path)

        monkeypatch.setattr(source.LegacySource, "open_file", failing_open)
        monkeypatch.setattr("nmig.exporter.entity.time.sleep", lambda s: None)  # our back-off only
        broken = export(info, tmp_path / "broken")
    assert not at_turn.failed and not ahead.failed, ahead.failed
    assert digests(tmp_path / "ahead") == digests(tmp_path / "at_turn")
    assert [(ref.sys_id if ref else None) for ref, _, _ in broken.failed] == ["VIS-1"]
    manifest = json.loads((tmp_path / "broken" / "runs" / "VIS-1" / "manifest.json").read_text("utf-8"))
    assert [e["path"] for e in manifest["errors"]] == ["files/f5"]
    assert "download lost by the test" in manifest["errors"][0]["message"]
    exported = {a["path"] for a in manifest["attributes"]}
    assert {f"files/f{i}" for i in range(7) if i != 5} | {"metrics/loss"} <= exported


def test_a_series_tail_held_up_by_429s_is_hedged_and_the_bundle_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the requests throttled (429, Retry-After 1 s): when every page of a series is asked for and the one
    the writer waits for is waiting out a Retry-After, it is asked for once more beside it. The bundle is the
    one a clean server gives, the twin given up leaves no held page behind, and the export does not wait for
    it to finish its Retry-Afters."""
    from exporter_helpers import make_project

    from nmig.exporter import entity

    fixture = make_project([{"attributes": {"train/loss": _long_series(8_000)}}], models=False)
    with serving(fixture) as info:
        clean = export(info, tmp_path / "clean", larger_page_size=None)
        port = int(info.url.rsplit(":", 1)[1])
    monkeypatch.setattr(entity, "PAGES_IN_FLIGHT", 4)
    monkeypatch.setattr(entity, "PAGES_HELD_BYTES", 0)  # every page answered ahead goes to disk: all are seen
    held = _record_spills(monkeypatch)
    with serving(fixture, port=port, throttle_rate=0.5, seed=5) as info:
        throttled = export(info, tmp_path / "throttled", larger_page_size=None)
    assert not clean.failed and not throttled.failed, throttled.failed
    assert throttled.hedged >= 1
    assert digests(tmp_path / "throttled") == digests(tmp_path / "clean")
    time.sleep(0.2)  # a twin answered after the export ended is dropped by its callback
    assert not any(path.exists() for path in held)
