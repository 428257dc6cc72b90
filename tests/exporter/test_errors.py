"""Bad input gets one clear line and a non-zero exit, never a traceback and never the token."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exporter_helpers import PROJECT, WORKSPACE, make_project, make_run, serving

from nmig.emulators.http import EmulatorInfo
from nmig.secrets import make_api_token

PROJECT_ARG = f"{WORKSPACE}/{PROJECT}"


def one_clear_line(result: Any, *needles: str, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and len(err.splitlines()) == 1, err
    assert err.startswith("nmig: error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_token_and_project(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    one_clear_line(run_cli("export", "--project", PROJECT_ARG, "--out", str(tmp_path / "b")), "no API token")
    one_clear_line(run_cli("export", "--api-token", "x", "--out", str(tmp_path / "b")), "no project")
    one_clear_line(
        run_cli("export", "--api-token", "x", "--project", "nope", "--out", str(tmp_path / "b")),
        "WORKSPACE/PROJECT",
    )


def test_bad_options(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    base = ["export", "--api-token", "x", "--project", PROJECT_ARG, "--out", str(tmp_path / "b")]
    one_clear_line(run_cli(*base, "--shard", "3/2"), "--shard")
    one_clear_line(run_cli(*base, "--runs", "VIS-("), "regular expression")
    one_clear_line(run_cli(*base, "VIS-1"), "unexpected argument 'VIS-1'")


def test_server_side_refusals(
    standard_server: EmulatorInfo, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    token = standard_server.api_token
    out = str(tmp_path / "b")
    bad_token = make_api_token(standard_server.url, "not-the-key")
    err = one_clear_line(
        run_cli("export", "--api-token", bad_token, "--project", PROJECT_ARG, "--out", out), "rejected"
    )
    assert "not-the-key" not in err and bad_token not in err
    one_clear_line(
        run_cli("export", "--api-token", token, "--project", f"{WORKSPACE}/missing", "--out", out),
        "not found",
    )
    err = one_clear_line(
        run_cli(
            "export",
            "--api-token",
            token,
            "--project",
            PROJECT_ARG,
            "--out",
            out,
            "--query",
            "params/lr:float >>> 1",
        ),
        "rejected the query",
    )
    assert token not in err


def test_unwritable_and_foreign_out_dirs(
    standard_server: EmulatorInfo, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    token = standard_server.api_token
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_clear_line(
        run_cli("export", "--api-token", token, "--project", PROJECT_ARG, "--out", str(blocker / "b")),
        "cannot write",
    )
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    one_clear_line(
        run_cli("export", "--api-token", token, "--project", PROJECT_ARG, "--out", str(foreign)),
        "not an nmig bundle",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "export.json").write_text(
        json.dumps({"format": "nmig-bundle", "format_version": "1.0", "source": {"workspace": "acme", "project": "nlp"}})
    )
    one_clear_line(
        run_cli("export", "--api-token", token, "--project", PROJECT_ARG, "--out", str(other)), "acme/nlp, not acme/vision"
    )
    # refused before anything was cleaned or written (only the export's own lock file is there)
    assert sorted(p.name for p in other.iterdir() if not p.name.startswith(".nmig-")) == ["export.json"]
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "export.json").write_text(json.dumps({"format": "nmig-bundle", "format_version": "2.0"}))
    one_clear_line(
        run_cli("export", "--api-token", token, "--project", PROJECT_ARG, "--out", str(newer)), "newer"
    )


def _limit_file_size() -> None:
    # A file size limit makes our writes fail the way a full disk does (EFBIG instead of ENOSPC); the signal
    # it would send is ignored so the write returns the error instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.slow
def test_full_disk_is_one_clear_line(tmp_path: Path) -> None:
    big = {
        "blob": {
            "type": "file",
            "ext": "bin",
            "content_base64": __import__("base64").b64encode(os.urandom(200_000)).decode(),
        }
    }
    fixture = make_project([make_run(1, points=10, extra=big)], models=False)
    with serving(fixture) as info:
        env = {**os.environ, "NEPTUNE_API_TOKEN": info.api_token, **info.env}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nmig",
                "export",
                "--project",
                PROJECT_ARG,
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
        )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "no space left" in proc.stderr, proc.stderr
    assert info.api_token not in proc.stderr + proc.stdout


def test_a_project_that_cannot_be_read_commits_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own attributes are read while its runs are exported (export._record_project): when they
    cannot be read, the export stops with the project named, and no run is committed without the export.json
    that describes it."""
    from exporter_helpers import export

    from nmig.errors import NmigError
    from nmig.exporter import source

    real = source.LegacySource.attributes

    def attributes(self: source.LegacySource, container_id: str) -> list[dict[str, Any]]:
        if container_id == self.project_container_id:
            raise ConnectionError("project attributes lost by the test")
        return real(self, container_id)

    monkeypatch.setattr(source.LegacySource, "attributes", attributes)
    monkeypatch.setattr("nmig.exporter.entity.time.sleep", lambda s: None)  # our back-off only
    with serving(make_project([make_run(1), make_run(2)], models=False)) as info:
        with pytest.raises(NmigError, match="cannot read project acme/vision from the server: .*lost by the test"):
            export(info, tmp_path / "b")
    runs = tmp_path / "b" / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert not (tmp_path / "b" / "export.json").exists()
