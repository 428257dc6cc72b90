"""`nmig emulate legacy` prints its ready line and stops on SIGTERM; `serve_legacy` yields the same information."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nmig.emulators.legacy import serve_legacy
from nmig.loopback import LOOPBACK_CLIENT_ENV
from nmig.secrets import api_address

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"
REPO = Path(__file__).resolve().parents[2]


def _get(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_cli_ready_line_then_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "nmig", "emulate", "legacy", "--fixture", str(ALL_TYPES), "--token-ttl", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"url", "api_token", "workspace", "env"}
        assert ready["workspace"] == "acme" and ready["env"] == LOOPBACK_CLIENT_ENV
        assert ready["url"].startswith("http://127.0.0.1:")
        assert api_address(ready["api_token"]) == ready["url"]
        assert _get(ready["url"] + "/api/backend/swagger.json") == 200
        assert _get(ready["url"] + "/api/backend/v1/myOrganizations") == 401  # no bearer token
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


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
