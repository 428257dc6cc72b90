"""`nmig import` and `nmig verify` of files through each signed-URL provider (aws, azure, gcp): the importer
runs neptune-scale's own uploader, and verify reads back through neptune-query's own downloads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import T0_MS, write_bundle

from nmig.emulators.neptune3 import serve_neptune3

BIG = os.urandom(600 * 1024)  # above the 256 KiB parts/chunks set below: S3 multipart, three GCS chunks


def _files_run(w: Any) -> None:
    w.add_atom("sys/name", "string", "with files")
    w.add_file("model/weights", BIG, name="weights", ext="bin")
    w.add_file("model/empty", b"", name="empty", ext="txt")
    for step in range(3):
        w.add_file_series_point("images/x", float(step), T0_MS + step, f"img{step}", None, f"png {step}".encode(), "png")


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_files_import_and_verify_through_each_provider(provider: str, run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq_runs

    monkeypatch.setenv("NEPTUNE_FILE_UPLOAD_CHUNK_SIZE", str(256 * 1024))
    bundle = write_bundle(tmp_path / "b", {"FILES-1": _files_run})
    with serve_neptune3(storage_provider=provider, multipart_part_size=256 * 1024) as info:
        project = f"demo/files-{provider}"
        result = run_cli("import", str(bundle), "--project", project, "--api-token", info.api_token, "--quiet")
        assert result.exit_code == 0, result.output
        verified = run_cli("verify", str(bundle), "--project", project, "--api-token", info.api_token, "--quiet")
        assert verified.exit_code == 0, verified.output

        neptune_query.set_api_token(info.api_token)
        table = nq_runs.fetch_runs_table(project=project, runs=["FILES-1"], attributes=["model/weights", "model/empty"])
        downloaded = nq_runs.download_files(files=table, destination=tmp_path / "down")
        assert Path(downloaded["model/weights"].iloc[0]).read_bytes() == BIG
        assert Path(downloaded["model/empty"].iloc[0]).read_bytes() == b""
