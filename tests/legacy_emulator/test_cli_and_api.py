"""`nmig emulate legacy` prints its ready line and stops on SIGTERM; `serve_legacy` yields the same information."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nmig.emulators.harness import bearer_headers, emulator_process
from nmig.emulators.legacy import serve_legacy
from nmig.loopback import LOOPBACK_CLIENT_ENV
from nmig.secrets import api_address

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"


def _get(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_cli_ready_line_then_serves_until_sigterm() -> None:
    with emulator_process("legacy", "--fixture", str(ALL_TYPES), "--token-ttl", "60") as server:
        ready = server.ready
        assert set(ready) == {"url", "api_token", "workspace", "env", "ca_file"}
        assert ready["workspace"] == "acme" and ready["env"] == LOOPBACK_CLIENT_ENV and ready["ca_file"] is None
        assert ready["url"].startswith("http://127.0.0.1:")
        assert api_address(ready["api_token"]) == ready["url"]
        assert _get(ready["url"] + "/api/backend/swagger.json") == 200
        assert _get(ready["url"] + "/api/backend/v1/myOrganizations") == 401  # no bearer token
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0


def test_cli_serves_the_skip_to_step_variant_of_the_api() -> None:
    with emulator_process("legacy", "--fixture", str(ALL_TYPES), "--series-paging", "skipToStep") as server:
        url = server.ready["url"] + "/api/leaderboard/swagger.json"
        with urllib.request.urlopen(url, timeout=10) as response:
            spec = json.loads(response.read())
        operation = spec["paths"]["/api/leaderboard/v1/attributes/series/float"]["get"]
        assert {p["name"] for p in operation["parameters"]} == {"experimentId", "attribute", "limit", "skipToStep"}
        assert "/api/leaderboard/v1/attributes/artifacts" not in spec["paths"]  # as in leaderboard.json (2025)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0


def test_serve_legacy_api_and_unretried_paths_are_exempt_by_default() -> None:
    with serve_legacy(ALL_TYPES, fail_rate=1.0) as info:
        assert info.workspace == "acme" and info.env == LOOPBACK_CLIENT_ENV
        # Everything is faulted except what the client does not retry (here: the API-token exchange).
        assert _get(info.url + "/api/backend/swagger.json") in (500, 503)
        assert (
            _get(
                info.url + "/api/backend/v1/authorization/oauth-token",
                **{"X-Neptune-Api-Token": info.api_token},
            )
            == 200
        )
    with serve_legacy(ALL_TYPES, fail_rate=1.0, fault_unretried=True) as info:
        assert _get(
            info.url + "/api/backend/v1/authorization/oauth-token", **{"X-Neptune-Api-Token": info.api_token}
        ) in (
            500,
            503,
        )


def test_serve_legacy_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        with serve_legacy(ALL_TYPES, host="0.0.0.0"):
            pass
    with pytest.raises(ValueError):
        with serve_legacy(ALL_TYPES, fail_rate=1.5):
            pass


def test_malformed_requests_get_400_not_500() -> None:
    with serve_legacy(ALL_TYPES) as info:
        bearer = bearer_headers(info.url, info.api_token)
        with urllib.request.urlopen(
            urllib.request.Request(
                info.url + "/api/backend/v1/projects/get?projectIdentifier=acme/all-types", headers=bearer
            )
        ) as response:
            project_id = json.load(response)["id"]
        search = f"{info.url}/api/leaderboard/v1/leaderboard/entries/search?projectIdentifier={project_id}"

        def post(body: bytes) -> int:
            request = urllib.request.Request(
                search, data=body, headers={**bearer, "Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert post(b'{"query": {"query": "`sys/id`:string = \\"AT-1\\""}}') == 200
        assert post(b"not json") == 400
        assert post(b'{"query": {"query": 5}}') == 400
        assert post(b'{"pagination": {"offset": "x"}}') == 400
        assert post(b'{"pagination": {"offset": 9999, "limit": 2}}') == 400
        assert post(b'{"query": "a string", "sorting": [], "attributeFilters": 3}') == 200
        assert _get(info.url + "/api/backend/v1/projects?offset=x", **bearer) == 400
        series = f"{info.url}/api/leaderboard/v1/attributes/series/float?experimentId=acme/all-types/AT-2&attribute=train/loss"
        assert _get(series + "&limit=10001", **bearer) == 400
        assert _get(series + "&offset=-1", **bearer) == 400
        assert _get(series + "&limit=2", **bearer) == 200


def test_an_emulator_process_that_cannot_start_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-fixture.json"
    with pytest.raises(RuntimeError, match="legacy emulator did not start: nmig: error: fixture .*no-such-fixture.json: cannot read"):
        with emulator_process("legacy", "--fixture", str(missing)):
            pass


def test_a_warmed_up_emulator_loads_nothing_more_to_answer_pages() -> None:
    """`nmig emulate legacy` warms up (wire.warm_up) so that no client pays the first page's imports; checked
    in a fresh interpreter on pages of every shape the fast formatting takes."""
    script = """
import sys
import numpy as np
from nmig.emulators.legacy import wire
from nmig.emulators.legacy.fixture import FloatSeries
wire.warm_up()
before = set(sys.modules)
n = 1000
for steps, values in [
    (np.arange(n, dtype=float), np.arange(n) + 0.25),
    (np.arange(n) + 0.5, np.arange(n, dtype=float)),
    (np.arange(n, dtype=float) * 2.0**60, np.linspace(-1, 1, n)),
]:
    assert wire.float_page_body(FloatSeries(steps=steps, values=values, timestamps=np.arange(n)), 0, n).endswith(b"]}")
print(sorted(set(sys.modules) - before))
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
