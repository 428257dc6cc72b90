"""`nmig migrate` killed with SIGKILL in the middle (export child included) and run again ends with the target
`nmig verify` finds identical to the bundle: every point once, nothing missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmig.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from state_view import state_runs  # noqa: E402


def _exports_writing_into(bundle: Path) -> list[int]:
    """Pids of `nmig export` processes whose command line names `bundle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"export" in cmdline and str(bundle).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and the Linux parent-death signal")
def test_killed_migrate_resumes_exactly_once(tmp_path: Path) -> None:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.sample import sample_fixture

    bundle = tmp_path / "bundle"
    # latency keeps the export going long enough to be killed with runs both imported and still to come
    with serve_legacy(sample_fixture(runs=8, points=3000), latency_ms=100) as legacy, serve_neptune3(
        data_dir=tmp_path / "neptune3"
    ) as target:
        env = {**os.environ, **legacy.env, "NEPTUNE_LEGACY_API_TOKEN": legacy.api_token, "NEPTUNE_API_TOKEN": target.api_token}
        args = [sys.executable, "-m", "nmig", "migrate", "--from", "acme/vision", "--to", "demo/vision", "--out", str(bundle),
                "--max-workers", "2", "--quiet"]
        first = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = bundle / "import-state.demo__vision.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            runs = state_runs(state)
            if any(entry["status"] == "imported" for entry in runs.values()):
                break
            time.sleep(0.05)
        assert first.poll() is None, "migrate finished before it could be killed"
        assert _exports_writing_into(bundle), "the export finished before migrate could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        time.sleep(1.0)
        assert _exports_writing_into(bundle) == [], "the export child outlived a killed migrate"
        runs = state_runs(state)
        assert 1 <= sum(entry["status"] == "imported" for entry in runs.values()) < 8

        again = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr
        verified = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/vision", "--api-token", target.api_token, "--quiet"])
    assert verified.exit_code == 0, verified.output
    # the 8 runs and the project-metadata run (nmig-legacy-project), each OK
    assert "All runs match." in verified.output and verified.output.count(" OK") == 8 + 1
    assert "(project)" in verified.output
