"""Token refresh, paging, NQL through the client, and fault injection, all driven by the unmodified client."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import neptune
import numpy as np
import pytest
from neptune.exceptions import NeptuneInvalidQueryException

from nmig.emulators.harness import access_token

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"


def _series_fixture(points: int, runs: int = 1) -> dict[str, Any]:
    steps = np.arange(points, dtype=np.float64)
    values = np.sin(steps / 7.0)
    values[::97] = np.nan
    stamps = 1_700_000_000_000 + np.arange(points, dtype=np.int64) * 10
    run_list: list[dict[str, Any]] = [
        {
            "attributes": {
                "metrics/loss": {
                    "type": "floatSeries",
                    "steps": steps,
                    "values": values,
                    "timestamps": stamps,
                },
                "logs/out": {
                    "type": "stringSeries",
                    "steps": steps[:2500].tolist(),
                    "values": [f"line {i}" for i in range(2500)],
                    "timestamps": stamps[:2500].tolist(),
                },
            }
        }
    ]
    run_list += [{"attributes": {"params/i": {"type": "int", "value": i}}} for i in range(1, runs)]
    return {
        "fixture_version": 1,
        "workspace": "acme",
        "projects": [{"name": "p", "key": "P", "runs": run_list}],
    }


def _check_series(run: Any, points: int) -> None:
    frame = run["metrics/loss"].fetch_values()
    assert len(frame) == points
    expected = np.sin(np.arange(points) / 7.0)
    expected[::97] = np.nan
    np.testing.assert_array_equal(frame["value"].to_numpy(dtype=float), expected)
    assert list(frame["step"][:3]) == [0.0, 1.0, 2.0]
    logs = run["logs/out"].fetch_values()
    assert list(logs["value"]) == [f"line {i}" for i in range(2500)]


def test_series_paging_and_large_pages(legacy_server: Any) -> None:
    with legacy_server(_series_fixture(2500)) as served:
        run = neptune.init_run(project="acme/p", with_id="P-1", api_token=served.token, mode="read-only")
        try:
            _check_series(run, 2500)
            # The client pages fetch_values() by 1,000: 3 pages for 2,500 points.
            assert served.emulator.stats["getFloatSeriesValues"] == 3
            backend = run._backend
            page = backend.get_float_series_values(
                run._id, run.container_type, ["metrics", "loss"], 0, 10_000
            )
            assert (
                page.totalItemCount == 2500 and len(page.values) == 2500 and math.isnan(page.values[0].value)
            )
            tail = backend.get_float_series_values(
                run._id, run.container_type, ["metrics", "loss"], 2400, 10_000
            )
            assert [v.step for v in tail.values[:2]] == [2400.0, 2401.0] and len(tail.values) == 100
            from neptune.common.exceptions import ClientHttpError

            with pytest.raises(ClientHttpError):  # pages are capped at 10,000 (assumed real-API limit)
                backend.get_float_series_values(run._id, run.container_type, ["metrics", "loss"], 0, 10_001)
        finally:
            run.stop()


def test_token_refresh_keeps_a_long_read_going(legacy_server: Any) -> None:
    with legacy_server(_series_fixture(2500), token_ttl=1) as served:
        run = neptune.init_run(project="acme/p", with_id="P-1", api_token=served.token, mode="read-only")
        try:
            import time

            time.sleep(1.2)  # the first access token is certainly expired now
            _check_series(run, 2500)
        finally:
            run.stop()
        stats = served.emulator.stats
        # Tokens live 1 s, so the client refreshes at the realm's token endpoint before its requests.
        assert stats["exchangeApiToken"] == 1
        assert stats["refreshToken"] >= 5


def test_expired_access_token_is_refused(legacy_server: Any) -> None:
    import time
    import urllib.error
    import urllib.request

    with legacy_server(ALL_TYPES, token_ttl=0.5) as served:
        base = served.info.url
        access = access_token(base, served.token)
        time.sleep(0.6)
        call = urllib.request.Request(
            f"{base}/api/backend/v1/myOrganizations", headers={"Authorization": f"Bearer {access}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(call)
        assert refused.value.code == 401
        assert json.load(refused.value)["errorType"] == "AUTHORIZATION_TOKEN_EXPIRED"
        forged = urllib.request.Request(
            f"{base}/api/backend/v1/myOrganizations", headers={"Authorization": f"Bearer {access[:-4]}AAAA"}
        )
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(forged)
        assert bad.value.code == 401


def test_wrong_api_token_is_refused(legacy_server: Any) -> None:
    from neptune.common.exceptions import NeptuneInvalidApiTokenException, Unauthorized

    from nmig.secrets import make_api_token

    with legacy_server(ALL_TYPES) as served:
        with pytest.raises((NeptuneInvalidApiTokenException, Unauthorized)):
            neptune.init_project(
                project="acme/all-types", api_token=make_api_token(served.info.url, "wrong"), mode="read-only"
            )


def test_runs_table_pages_and_continues_past_the_offset_cap(
    legacy_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 10_050
    fixture = {
        "fixture_version": 1,
        "workspace": "acme",
        "projects": [{"name": "many", "key": "M", "runs": [{"attributes": {}} for _ in range(runs)]}],
    }
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "5000")
    with legacy_server(fixture) as served:
        project = neptune.init_project(project="acme/many", api_token=served.token, mode="read-only")
        try:
            table = project.fetch_runs_table(
                columns=["sys/id"], ascending=True, progress_bar=False
            ).to_pandas()
            searches = served.emulator.stats["searchLeaderboardEntries"]
            # A fact about the pinned client that exporters must know: its continuation past 10,000 always
            # adds `sort column > last value`, so with the default (descending) sort it repeats rows.
            newest_first = project.fetch_runs_table(columns=["sys/id"], limit=10_100, progress_bar=False)
            newest_ids = [row["sys/id"].get() for row in newest_first]
        finally:
            project.stop()
        assert len(table) == runs
        assert list(table["sys/id"][:2]) == ["M-1", "M-2"] and table["sys/id"].is_unique
        # 1 count + 2 pages of 5,000 under the 10,000 offset cap, then `creation_time > last` pages: 50 and an empty one.
        assert searches == 5
        assert newest_ids[:2] == ["M-10050", "M-10049"] and len(newest_ids) == 10_100
        assert len(set(newest_ids)) == 10_000  # 100 repeats; runs M-1..M-50 never listed


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('`params/optimizer`:string = "adam"', ["AT-1", "AT-3"]),
        ("params/optimizer = sgd", ["AT-2"]),
        ("`params/lr`:float > 0.005 AND `params/lr`:float <= 0.1", ["AT-2", "AT-3"]),
        ("(`params/epochs`:int >= 10) OR (`params/augment`:bool = false)", ["AT-1", "AT-2", "AT-3"]),
        ('NOT `params/optimizer`:string != "adam"', ["AT-1", "AT-3"]),
        ('`sys/tags`:stringSet CONTAINS "résumé"', ["AT-1"]),
        ('`sys/name`:string CONTAINS "s"', ["AT-1", "AT-2", "AT-3"]),
        ('`sys/creation_time`:datetime < "2023-03-02T00:00:00Z"', ["AT-1"]),
        ("`params/learning rate`:float = 0.25", ["AT-1"]),
        ('`sys/state`:experimentState = "running"', ["AT-1"]),
        ("", ["AT-1", "AT-2", "AT-3"]),
    ],
)
def test_nql_through_the_client(all_types: Any, query: str, expected: list[str]) -> None:
    project = neptune.init_project(project="acme/all-types", api_token=all_types.token, mode="read-only")
    try:
        table = project.fetch_runs_table(query=query, trashed=False, columns=["sys/id"]).to_pandas()
    finally:
        project.stop()
    assert (sorted(table["sys/id"]) if len(table) else []) == expected


def test_nql_syntax_error_reaches_the_user(all_types: Any) -> None:
    project = neptune.init_project(project="acme/all-types", api_token=all_types.token, mode="read-only")
    try:
        with pytest.raises(NeptuneInvalidQueryException):
            project.fetch_runs_table(query="`params/lr`:float >> 1").to_pandas()
    finally:
        project.stop()


@pytest.mark.slow
def test_client_completes_under_faults_and_throttling(legacy_server: Any) -> None:
    with legacy_server(
        _series_fixture(12_000), fail_rate=0.1, throttle_rate=0.02, latency_ms=2, seed=11
    ) as served:
        run = neptune.init_run(project="acme/p", with_id="P-1", api_token=served.token, mode="read-only")
        try:
            _check_series(run, 12_000)
            assert run["metrics/loss"].fetch_last() == pytest.approx(math.sin(11_999 / 7.0))
        finally:
            run.stop()
        project = neptune.init_project(project="acme/p", api_token=served.token, mode="read-only")
        try:
            assert list(project.fetch_runs_table(columns=["sys/id"]).to_pandas()["sys/id"]) == ["P-1"]
        finally:
            project.stop()
    # Faulted requests never reach a handler: each of the 12 pages was served once, after the client's retries.
    assert served.emulator.stats["getFloatSeriesValues"] == 12
    assert served.emulator.faults.injected >= 2


@pytest.mark.slow
def test_downloads_and_atoms_complete_under_faults(legacy_server: Any, tmp_path: Path) -> None:
    import zipfile

    with legacy_server(ALL_TYPES, fail_rate=0.1, throttle_rate=0.02, seed=5, token_ttl=2) as served:
        run = neptune.init_run(
            project="acme/all-types", with_id="AT-3", api_token=served.token, mode="read-only"
        )
        try:
            run["files/picture"].download(str(tmp_path / "p.png"))
            run["files/empty"].download(str(tmp_path / "e.bin"))
            run["source_code/files"].download(str(tmp_path / "fs.zip"))
            assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
            assert (tmp_path / "e.bin").read_bytes() == b""
            with zipfile.ZipFile(tmp_path / "fs.zip") as archive:
                assert len(archive.namelist()) == 4
            assert run["params/optimizer"].fetch() == "adam" and run["params/epochs"].fetch() == 30
        finally:
            run.stop()
        run = neptune.init_run(
            project="acme/all-types", with_id="AT-2", api_token=served.token, mode="read-only"
        )
        try:
            run["images/samples"].download(str(tmp_path / "img"))
            assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["0.png", "1.png"]
            assert len(run["logs/stdout"].fetch_values()) == 4
        finally:
            run.stop()
        run = neptune.init_run(
            project="acme/all-types", with_id="AT-1", api_token=served.token, mode="read-only"
        )
        try:
            assert len(run["datasets/train"].fetch_files_list()) == 2
            assert run["sys/tags"].fetch() == {"baseline", "résumé", "with space"}
        finally:
            run.stop()
    assert served.emulator.faults.injected >= 2


def test_queries_the_client_builds_itself(all_types: Any) -> None:
    project = neptune.init_project(project="acme/all-types", api_token=all_types.token, mode="read-only")
    try:

        def ids(**filters: Any) -> list[str]:
            table = project.fetch_runs_table(columns=["sys/id"], progress_bar=False, **filters).to_pandas()
            return sorted(table["sys/id"]) if len(table) else []

        assert ids(state="active") == ["AT-1"]
        assert ids(state="inactive") == ["AT-2", "AT-3"]
        assert ids(owner="ana") == ["AT-1"]
        assert ids(tag=["baseline", "résumé"]) == ["AT-1"]
        assert ids(id=["AT-2", "AT-4"]) == ["AT-2"]  # AT-4 is trashed
        assert ids(id=["AT-2", "AT-4"], trashed=None) == ["AT-2", "AT-4"]
        assert ids(limit=2) == ["AT-2", "AT-3"]  # newest first
        table = project.fetch_runs_table(columns=["sys/id"], sort_by="params/lr", ascending=True).to_pandas()
        assert list(table["sys/id"]) == ["AT-1", "AT-2", "AT-3"]
    finally:
        project.stop()


def test_throttling_is_429_with_retry_after_and_the_client_waits(legacy_server: Any) -> None:
    import time
    import urllib.error
    import urllib.request

    with legacy_server(ALL_TYPES, throttle_rate=1.0) as served:
        with pytest.raises(urllib.error.HTTPError) as throttled:
            urllib.request.urlopen(served.info.url + "/api/backend/swagger.json")
        assert throttled.value.code == 429 and throttled.value.headers["Retry-After"] == "1"
    with legacy_server(ALL_TYPES, throttle_rate=0.15, seed=1) as served:
        started = time.monotonic()
        run = neptune.init_run(
            project="acme/all-types", with_id="AT-2", api_token=served.token, mode="read-only"
        )
        try:
            assert len(run["train/loss"].fetch_values()) == 5
            assert run["params/optimizer"].fetch() == "sgd"
        finally:
            run.stop()
        throttles = served.emulator.faults.injected
        assert throttles >= 1
        assert time.monotonic() - started >= throttles  # the client honoured Retry-After: 1 each time


def test_latency_delays_every_answer(legacy_server: Any) -> None:
    import time
    import urllib.request

    with legacy_server(ALL_TYPES, latency_ms=150) as served:
        for _ in range(2):
            started = time.monotonic()
            with urllib.request.urlopen(served.info.url + "/api/leaderboard/swagger.json") as response:
                assert response.status == 200
            assert time.monotonic() - started >= 0.15
