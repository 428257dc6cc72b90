"""The run listing asks for 1,000 rows per request (source.LISTING_STEP) instead of the client's 100, falls back
to the client's own size when the larger one fails, and a user's NEPTUNE_FETCH_TABLE_STEP_SIZE wins."""

from __future__ import annotations

import os
from typing import Any

import pytest

from nmig.emulators.http import FaultPlan
from nmig.emulators.legacy.server import LegacyEmulator
from nmig.exporter.source import LegacySource

RUNS = 2_500


def _fixture() -> dict[str, Any]:
    runs = [{"attributes": {"params/n": {"type": "int", "value": i}}} for i in range(RUNS)]
    return {"fixture_version": 1, "workspace": "acme", "projects": [{"name": "many", "key": "MNY", "runs": runs}]}


@pytest.fixture(scope="module")
def emulator() -> Any:
    emulator = LegacyEmulator(_fixture())
    with emulator.serve(FaultPlan()) as info:
        yield emulator, info


def _list(emulator: Any, info: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], int]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with LegacySource("acme/many", info.api_token, quiet=True) as source:
        before = emulator.stats["searchLeaderboardEntries"]
        refs = source.list_entities("run", None, False)
        return [r.sys_id for r in refs], emulator.stats["searchLeaderboardEntries"] - before


def test_large_listing_pages(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", raising=False)
    ids, requests = _list(*emulator, monkeypatch)
    assert sorted(ids) == sorted(f"MNY-{i + 1}" for i in range(RUNS))
    assert requests <= 5  # a count and 3 pages of 1,000 (the client's 100 would take 26)
    assert "NEPTUNE_FETCH_TABLE_STEP_SIZE" not in os.environ  # set for the listing only


def test_user_step_size_wins(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "500")
    ids, requests = _list(*emulator, monkeypatch)
    assert len(ids) == RUNS and requests >= 6


def test_refused_large_pages_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server refusing more than 100 rows per request (400, as for a bad pagination) is listed the client's way."""
    monkeypatch.delenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", raising=False)
    strict = LegacyEmulator(_fixture(), max_leaderboard_rows=100)
    with strict.serve(FaultPlan()) as info:
        ids, requests = _list(strict, info, monkeypatch)
    assert sorted(ids) == sorted(f"MNY-{i + 1}" for i in range(RUNS))
    assert requests >= 26  # refused once, then listed 100 at a time


def test_listings_side_by_side_each_page_at_the_larger_size(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export lists runs, models and model versions at once (export._list_refs): the page size set for one
    listing's creation neither leaks into the environment nor is mistaken by another for the user's own."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", raising=False)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    server, info = emulator
    with LegacySource("acme/many", info.api_token, quiet=True) as source:
        before = server.stats["searchLeaderboardEntries"]
        with ThreadPoolExecutor(4) as pool:
            listed = list(pool.map(lambda _: source.list_entities("run", None, False), range(4)))
        requests = server.stats["searchLeaderboardEntries"] - before
    for refs in listed:
        assert sorted(r.sys_id for r in refs) == sorted(f"MNY-{i + 1}" for i in range(RUNS))
    assert requests <= 4 * 5  # each: a count and 3 pages of 1,000 (at the client's 100, 26 each)
    assert "NEPTUNE_FETCH_TABLE_STEP_SIZE" not in os.environ
