"""The importing machine is untrusted too: a read-only bundle, an unwritable state folder, a full disk. Each is
one line and exit 2, found before anything is created in 3.x; once fixed, the same command completes.

The disks are real: small tmpfs mounts (root inside the CI container may mount; elsewhere these skip)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators.http import EmulatorInfo
from nmig.importer.plan import PROJECT_RUN_ID


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _projects(nq: Any, project: str) -> list[str] | None:
    try:
        return sorted(nq.list_runs(project=project))
    except Exception:  # the project does not exist
        return None


def _one_line(result: Any) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unwritable_state_folder_is_one_line_before_3x_is_touched(
    pristine: Path, run_cli: Any, neptune3: EmulatorInfo, nq: Any
) -> None:
    result = run_cli("import", str(pristine), "--project", "demo/env-state", "--api-token", neptune3.api_token,
                     "--state", "/sys/nmig-test/state.json")
    assert result.exit_code == 2
    line = _one_line(result)
    assert "/sys/nmig-test is not writable" in line
    assert _projects(nq, "demo/env-state") is None  # not even the project was created


def test_full_disk_is_one_line_and_a_rerun_completes(
    pristine: Path, small_disk: Path, run_cli: Any, neptune3: EmulatorInfo, nq: Any
) -> None:
    bundle = small_disk / "bundle"
    shutil.copytree(pristine, bundle)
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # leave about 200 KiB free
        free = shutil.disk_usage(small_disk).free
        fh.write(bytes(free - 200 * 1024))
    args = ("import", str(bundle), "--project", "demo/env-full", "--api-token", neptune3.api_token, "--quiet")
    result = run_cli(*args)
    assert result.exit_code == 2
    line = _one_line(result)
    assert f"the disk mounted at {small_disk}" in line and "KiB free" in line
    assert _projects(nq, "demo/env-full") is None
    filler.unlink()
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert _projects(nq, "demo/env-full") == sorted(["AT-2", "custom-atoms-001", "custom-files-003", PROJECT_RUN_ID])


def test_read_only_bundle_needs_a_state_elsewhere(
    pristine: Path, small_disk: Path, tmp_path: Path, run_cli: Any, neptune3: EmulatorInfo, nq: Any
) -> None:
    bundle = small_disk / "bundle"
    shutil.copytree(pristine, bundle)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    args = ("import", str(bundle), "--project", "demo/env-ro", "--api-token", neptune3.api_token, "--quiet")
    result = run_cli(*args)
    assert result.exit_code == 2
    line = _one_line(result)
    assert "read-only" in line and "pass --state PATH" in line
    assert _projects(nq, "demo/env-ro") is None
    checked = run_cli("inspect", str(bundle), "--check")  # reading needs no write
    assert checked.exit_code == 0, checked.output
    result = run_cli(*args, "--state", str(tmp_path / "state" / "import-state.json"))
    assert result.exit_code == 0, result.output
    assert _projects(nq, "demo/env-ro") == sorted(["AT-2", "custom-atoms-001", "custom-files-003", PROJECT_RUN_ID])


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", ["export", "import", "verify", "migrate"])
def test_unreachable_service_is_one_line_within_the_timeout(
    command: str, pristine: Path, tmp_path: Path, run_cli: Any
) -> None:
    import time

    from nmig.secrets import make_api_token

    token = make_api_token(f"http://127.0.0.1:{_closed_port()}", "key")
    args = {
        "export": ("export", "--project", "acme/all-types", "--out", str(tmp_path / "out")),
        "import": ("import", str(pristine), "--project", "demo/unreachable", "--state", str(tmp_path / "s" / "state.json")),
        "verify": ("verify", str(pristine), "--project", "demo/unreachable"),
        "migrate": ("migrate", "--from", "acme/all-types", "--to", "demo/unreachable", "--out", str(tmp_path / "out"),
                    "--legacy-token", token),
    }[command]
    started = time.monotonic()
    result = run_cli(*args, "--api-token", token, "--timeout", "2")
    took = time.monotonic() - started
    assert result.exit_code == 2
    line = _one_line(result)
    assert "cannot reach the" in line and "within 2 s (Connection refused)" in line
    assert token not in line
    assert took < 20, took  # 2 s of attempts; the rest is the machine's load
    assert not (tmp_path / "out").exists()
