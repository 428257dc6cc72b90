"""The fast path leans on internals of the pinned neptune client; this fails loudly when an upgrade moves them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from exporter_helpers import PROJECT, WORKSPACE

from nmig.emulators.http import EmulatorInfo
from nmig.exporter.source import (
    TABLE_ENTRY_ATTRIBUTES,
    ClientInternalsChanged,
    LegacySource,
    check_client_internals,
)


def test_pinned_client_has_every_internal_the_fast_path_uses(standard_server: EmulatorInfo) -> None:
    check_client_internals()
    with LegacySource(f"{WORKSPACE}/{PROJECT}", standard_server.api_token, quiet=True) as source:
        check_client_internals(source._project)  # backend, swagger clients and every operation called by name
        table = source._project.fetch_runs_table(columns=["sys/id"], progress_bar=False)
        row = next(iter(table))
        assert all(hasattr(row, name) for name in TABLE_ENTRY_ATTRIBUTES)
        refs = source.list_entities("run", None, include_trashed=False)
        assert {r.sys_id for r in refs} == {f"VIS-{n}" for n in range(1, 7)}


def test_a_missing_internal_is_named() -> None:
    project_without_backend = SimpleNamespace(_id="x", _project_id="y")
    with pytest.raises(ClientInternalsChanged, match="project._backend"):
        check_client_internals(project_without_backend)


def test_listing_past_the_client_offset_cap_lists_every_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past 10,000 rows the client continues with `sort column > last value`; the exporter's own sort must make
    # that continuation reach every run exactly once (the client's default newest-first sort does not).
    from exporter_helpers import serving

    runs = 10_050
    fixture = {
        "fixture_version": 1,
        "workspace": WORKSPACE,
        "projects": [{"name": "many", "key": "M", "runs": [{"attributes": {}} for _ in range(runs)]}],
    }
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "5000")
    with serving(fixture) as info, LegacySource(f"{WORKSPACE}/many", info.api_token, quiet=True) as source:
        refs = source.list_entities("run", None, include_trashed=False)
    assert len(refs) == runs
    assert {r.sys_id for r in refs} == {f"M-{n}" for n in range(1, runs + 1)}
