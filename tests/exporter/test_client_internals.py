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


def test_no_2x_spec_uses_the_iri_formats_whose_checker_the_export_skips() -> None:
    # skip_iri_grammar hides rfc3987_syntax, which jsonschema uses only for the "iri" and "iri-reference"
    # formats: harmless only while no spec the client validates against names them (the published ones and
    # the emulator's served ones alike).
    import json
    from pathlib import Path

    from nmig.emulators.legacy.spec import build_specs

    reference = Path("/work/shared/reference/neptune-api")
    texts = [p.read_text(encoding="utf-8") for p in sorted(reference.glob("*.json"))] if reference.is_dir() else []
    texts += [json.dumps(spec) for spec in build_specs().values()]
    assert texts
    formats = {f for text in texts for f in _formats(json.loads(text))}
    assert not formats & {"iri", "iri-reference"}, formats


def _formats(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["format"]} if isinstance(node.get("format"), str) else set()
        return found.union(*(_formats(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_formats(v) for v in node))
    return set()


def test_the_export_loads_the_client_without_the_iri_grammar() -> None:
    import subprocess
    import sys

    code = ("import sys; from nmig.exporter.source import skip_iri_grammar; skip_iri_grammar(); import neptune; "
            "import jsonschema; print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_client_builds_every_session_through_the_function_quick_retries_wrap() -> None:
    # retry_transient_answers_quickly wraps hosted_client.create_http_client; that reaches every session only
    # while the client's two session builders call it by that module-level name (hosted_client.py:112,157).
    import inspect

    from neptune.internal.backends import hosted_client

    for builder in (hosted_client._get_token_client, hosted_client.create_http_client_with_auth):
        code = inspect.unwrap(builder).__code__  # under the client's @cache
        assert "create_http_client" in code.co_names, builder


def test_a_transient_answer_is_asked_again_by_the_session_the_client_built() -> None:
    # Every second request faulted (5xx; 429s would only add Retry-After waits): each GET on the client's own
    # session still ends 200, the faults answered by urllib3 before the client's slower loop saw them.
    from exporter_helpers import serving, standard_fixture

    from nmig.transient import QUICK_RETRIES, TRANSIENT_STATUSES

    with serving(standard_fixture(), fail_rate=0.5, seed=3) as info:
        with LegacySource(f"{WORKSPACE}/{PROJECT}", info.api_token, quiet=True) as source:
            http_client = source._backend.leaderboard_client.swagger_spec.http_client
            assert all(a.max_retries.status == QUICK_RETRIES for a in http_client.session.adapters.values())
            url = source._backend.leaderboard_client.swagger_spec.origin_url
            retried = []
            for _ in range(8):
                response = http_client.session.get(url, timeout=10)
                assert response.status_code == 200
                retried += [h.status for h in response.raw.retries.history]
    assert retried and set(retried) <= TRANSIENT_STATUSES


def test_a_thread_waiting_before_a_quick_retry_is_marked_resting() -> None:
    # The pager does not count a request waiting out a Retry-After against its requests at the server; that
    # rests on urllib3 calling Retry.sleep(response) between attempts, which quick_retry's class wraps.
    import threading

    from urllib3 import HTTPResponse
    from urllib3.util import retry as urllib3_retry

    from nmig.exporter.source import RESTING, quick_retry

    seen: list[bool] = []
    original_sleep = urllib3_retry.time.sleep
    urllib3_retry.time.sleep = lambda seconds: seen.append(threading.get_ident() in RESTING)  # type: ignore[assignment]
    try:
        retry = quick_retry().increment("GET", "/x", response=HTTPResponse(status=429, headers={"Retry-After": "1"}))
        retry.sleep(HTTPResponse(status=429, headers={"Retry-After": "1"}))
    finally:
        urllib3_retry.time.sleep = original_sleep
    assert seen == [True]
    assert threading.get_ident() not in RESTING


def test_the_client_downloads_each_spec_once_and_side_by_side() -> None:
    # The client asks for the backend spec three times and the three specs one after another; through
    # load_specs_together each is asked for once, and the project opens the same.
    from collections import Counter

    from exporter_helpers import standard_fixture

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.legacy.server import LegacyEmulator
    from nmig.exporter.source import SPEC_PATHS

    asked: Counter[str] = Counter()

    class CountingPlan(FaultPlan):
        def decide(self, path: str):  # type: ignore[no-untyped-def]
            asked[path] += 1
            return super().decide(path)

    with LegacyEmulator(standard_fixture()).serve(CountingPlan(), "127.0.0.1", 0, False) as info:
        with LegacySource(f"{WORKSPACE}/{PROJECT}", info.api_token, quiet=True) as source:
            assert source.project_uuid
            assert source.list_entities("run", None, include_trashed=False)
    assert {path: asked[path] for path in SPEC_PATHS} == dict.fromkeys(SPEC_PATHS, 1)


def test_a_spec_another_client_failed_to_download_is_downloaded_by_the_callers_own() -> None:
    # The token client (unauthenticated) starts all three specs; a server that keeps one for authenticated
    # sessions refuses it that way, and the client never retries a 401: the authenticated caller downloads
    # it itself. Its own failure still reaches it, for the client's retry loop.
    from nmig.exporter.source import SPEC_PATHS, _SpecDownloads

    base = "https://neptune.example"
    backend, leaderboard, artifacts = (base + p for p in SPEC_PATHS)

    def anonymous(url: str) -> dict[str, str]:
        if url != backend:
            raise PermissionError(f"401 for {url}")
        return {"spec": url, "by": "anonymous"}

    def authenticated(url: str) -> dict[str, str]:
        if url == artifacts:
            raise ConnectionError("artifacts spec lost")
        return {"spec": url, "by": "authenticated"}

    specs = _SpecDownloads()
    assert specs.load(backend, anonymous) == {"spec": backend, "by": "anonymous"}
    assert specs.load(backend, authenticated) == {"spec": backend, "by": "anonymous"}  # downloaded once
    assert specs.load(leaderboard, authenticated) == {"spec": leaderboard, "by": "authenticated"}
    with pytest.raises(ConnectionError):
        specs.load(artifacts, authenticated)
