"""File uploads and downloads through each signed-URL provider neptune-scale 0.30 supports (aws, azure, gcp).

The emulator hands out the provider's kind of URL (`serve_neptune3(storage_provider=...)`); the unmodified
neptune_scale.Run uploads with that provider's own code (azure-storage-blob's BlobClient, the GCS resumable
session, S3 presigned PUTs and multipart) and neptune-query downloads with its own. An expired URL is answered
as each provider answers it, and each client takes that answer its own way.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from nmig.emulators.neptune3 import serve_neptune3
from nmig.emulators.neptune3.storage_wire import PROVIDERS

CHUNK = 256 * 1024  # the smallest upload chunk neptune-scale allows (a multiple of 256 KiB, for GCS)


def _files(tmp: Path) -> dict[str, bytes]:
    """attribute path -> content: empty, small, and three chunks' worth (multipart for aws, 3 GCS chunks)."""
    contents = {
        "files/empty": b"",
        "files/small": b"small \x00 file",
        "files/big": os.urandom(2 * CHUNK + 12_345),
        "files/odd name %?#&=+ ü": b"a key that needs quoting in every provider's URL",
    }
    for index, data in enumerate(contents.values()):
        (tmp / f"f{index}.bin").write_bytes(data)
    return contents


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_clients_upload_and_download_through_each_provider(provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query as nq
    import neptune_query.runs as nq_runs
    from neptune_scale import Run
    from neptune_scale.projects import create_project

    # the sync process reads the chunk size from the environment it inherits
    monkeypatch.setenv("NEPTUNE_FILE_UPLOAD_CHUNK_SIZE", str(CHUNK))
    contents = _files(tmp_path)
    errors: list[BaseException] = []
    with serve_neptune3(data_dir=tmp_path / "data", storage_provider=provider, multipart_part_size=CHUNK) as info:
        project = f"{info.workspace}/files-{provider}"
        create_project(project, api_token=info.api_token)
        with Run(
            project=project,
            api_token=info.api_token,
            run_id="r",
            log_directory=tmp_path / "client",
            enable_console_log_capture=False,
            source_tracking_config=None,
            on_error_callback=lambda exc, ts: errors.append(exc),
        ) as run:
            run.assign_files({path: str(tmp_path / f"f{index}.bin") for index, path in enumerate(contents)})
            run.log_files({"series/f": contents["files/big"][:1000]}, step=1)
            run.log_files({"series/f": b""}, step=2)
            run.wait_for_processing()
        assert errors == []

        nq.set_api_token(info.api_token)
        table = nq_runs.fetch_runs_table(project=project, runs=["r"], attributes=list(contents))
        downloaded = nq_runs.download_files(files=table, destination=tmp_path / "down")
        got = {path: Path(downloaded[path].iloc[0]).read_bytes() for path in contents}
        assert got == contents
        series = nq_runs.fetch_series(project=project, runs=["r"], attributes=["series/f"])
        result = nq_runs.download_files(files=series, destination=tmp_path / "down-series")
        by_step = {float(step): Path(path).read_bytes() for (_, step), path in result["series/f"].items()}
        assert by_step == {1.0: contents["files/big"][:1000], 2.0: b""}
    assert not [p for p in (tmp_path / "data" / "uploads").iterdir()], "staged parts, blocks or sessions left behind"


def _sign(info: Any, project: str, path: str, permission: str, size: int = 10) -> Any:
    """A signed URL through neptune-scale's own storage-bridge call."""
    from neptune_scale.net.api_client import ApiClient, FileSignRequest
    from neptune_scale.sync.sync_process import fetch_file_storage_urls

    client = ApiClient(api_token=info.api_token)
    try:
        return fetch_file_storage_urls(client, project, [FileSignRequest(path=path, size=size, permission=permission)])[path]
    finally:
        client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_expired_url_is_answered_as_the_provider_does_and_each_client_takes_it_its_way(
    provider: str, tmp_path: Path
) -> None:
    import azure.core.exceptions
    from neptune_query.internal.identifiers import ProjectIdentifier
    from neptune_query.internal.retrieval.files import SignedFile, download_file
    from neptune_scale.exceptions import NeptuneFileUploadTemporaryError
    from neptune_scale.projects import create_project
    from neptune_scale.sync.storage.azure_storage import upload_to_azure
    from neptune_scale.sync.storage.gcs import upload_to_gcp
    from neptune_scale.sync.storage.s3 import upload_to_s3_single

    local = tmp_path / "x.txt"
    local.write_bytes(b"0123456789")
    with serve_neptune3(storage_provider=provider, url_ttl_s=-60) as info:
        project = f"{info.workspace}/expiry"
        create_project(project, api_token=info.api_token)
        write = _sign(info, project, "k/x.txt", "write")
        assert write.provider == provider

        raw = httpx.put(write.url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"}) if provider != "gcp" else (
            httpx.post(write.url, headers={"x-goog-resumable": "start"})
        )
        expected = {"aws": (403, "AccessDenied"), "azure": (403, "AuthenticationFailed"), "gcp": (400, "ExpiredToken")}
        assert raw.status_code == expected[provider][0]
        assert f"<Code>{expected[provider][1]}</Code>" in raw.text
        if provider == "azure":
            assert raw.headers["x-ms-error-code"] == "AuthenticationFailed"
            assert "Signed expiry time" in raw.text

        upload = {
            "aws": lambda: upload_to_s3_single(str(local), "text/plain", write.url),
            "azure": lambda: upload_to_azure(str(local), "text/plain", write.url),
            "gcp": lambda: upload_to_gcp(str(local), "text/plain", write.url),
        }[provider]
        if provider == "aws":
            # S3 answers 403, which neptune-scale's s3.py does not retry: the upload fails for good
            with pytest.raises(httpx.HTTPStatusError) as failed:
                asyncio.run(upload())
            assert failed.value.response.status_code == 403
        else:
            # Azure's 403 AuthenticationFailed and GCS's 400 are "temporary": the client signs again and retries
            with pytest.raises(NeptuneFileUploadTemporaryError) as temporary:
                asyncio.run(upload())
            if provider == "azure":
                assert isinstance(temporary.value.__cause__, azure.core.exceptions.ClientAuthenticationError)

        read = _sign(info, project, "k/x.txt", "read")
        signed = SignedFile(url=read.url, path="k/x.txt", provider=provider, project_identifier=ProjectIdentifier(project),
                            permission="read")
        result = download_file(signed, tmp_path / "got")
        # neptune-query signs again on "expired" (azure's 403 AuthenticationFailed, GCS's 400); S3's 403 is "transient"
        assert (result.status, result.status_code) == ({"aws": "transient"}.get(provider, "expired"), expected[provider][0])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_url_cannot_be_turned_into_another_object_or_operation(provider: str, tmp_path: Path) -> None:
    from neptune_scale.projects import create_project

    with serve_neptune3(storage_provider=provider) as info:
        project = f"{info.workspace}/tamper"
        create_project(project, api_token=info.api_token)
        read = _sign(info, project, "k/a.txt", "read")
        other_key = read.url.replace("/k/a.txt?", "/k/b.txt?")
        assert other_key != read.url
        assert httpx.get(other_key).status_code == 403
        missing = httpx.get(read.url)  # a valid URL for an object nobody uploaded
        assert missing.status_code == 404
        assert {"aws": "NoSuchKey", "azure": "BlobNotFound", "gcp": "NoSuchKey"}[provider] in missing.text
        if provider == "azure":
            refused = httpx.put(read.url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
            assert (refused.status_code, refused.headers["x-ms-error-code"]) == (403, "AuthorizationPermissionMismatch")
        else:
            method = "PUT" if provider == "aws" else "POST"
            assert httpx.request(method, read.url, content=b"x", headers={"x-goog-resumable": "start"}).status_code == 403


@pytest.mark.slow
def test_azure_block_upload_of_a_file_above_the_single_put_limit(tmp_path: Path) -> None:
    """azure-storage-blob puts a file above 64 MiB (its max_single_put_size) as blocks of the client's chunk
    size plus a block list; neptune-query reads it back in ranged GETs (32 MiB first, then 4 MiB chunks)."""
    from neptune_query.internal.identifiers import ProjectIdentifier
    from neptune_query.internal.retrieval.files import SignedFile, download_file
    from neptune_scale.projects import create_project
    from neptune_scale.sync.storage.azure_storage import upload_to_azure

    local = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    with open(local, "wb") as out:
        for index in range(65):
            out.write(block[index:] + block[:index])
        out.write(b"tail")
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    with serve_neptune3(data_dir=tmp_path / "data", storage_provider="azure") as info:
        project = f"{info.workspace}/big"
        create_project(project, api_token=info.api_token)
        write = _sign(info, project, "k/big.bin", "write", size=local.stat().st_size)
        asyncio.run(upload_to_azure(str(local), "application/octet-stream", write.url, chunk_size=16 * 1024 * 1024))
        read = _sign(info, project, "k/big.bin", "read")
        signed = SignedFile(url=read.url, path="k/big.bin", provider="azure", project_identifier=ProjectIdentifier(project),
                            permission="read")
        assert download_file(signed, tmp_path / "got.bin").status == "success"
        assert hashlib.sha256((tmp_path / "got.bin").read_bytes()).hexdigest() == digest
    assert not [p for p in (tmp_path / "data" / "uploads").iterdir()]


def test_the_command_serves_the_provider_it_is_told(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from neptune_scale.projects import create_project

    from nmig.emulators.http import EmulatorInfo

    command = [sys.executable, "-m", "nmig.cli", "emulate", "neptune3", "--storage-provider", "gcp"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        info = EmulatorInfo(**ready)
        create_project(f"{info.workspace}/cli", api_token=info.api_token)
        signed = _sign(info, f"{info.workspace}/cli", "k/x", "write")
        assert signed.provider == "gcp" and "X-Goog-Signature=" in signed.url
    finally:
        server.terminate()
        server.wait(timeout=30)
    bad = subprocess.run([*command[:-1], "ftp"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "'ftp' is not one of" in bad.stderr


def test_gcs_keeps_whole_256_kib_multiples_of_a_chunk_and_the_client_resumes_from_what_it_is_told(tmp_path: Path) -> None:
    """GCS persists non-final chunks in multiples of 256 KiB and says how much in `Range`; neptune-scale's
    gcs.py seeks back to it (gcs.py 112-119). A chunk size that is not a multiple exercises exactly that."""
    from neptune_query.internal.identifiers import ProjectIdentifier
    from neptune_query.internal.retrieval.files import SignedFile, download_file
    from neptune_scale.projects import create_project
    from neptune_scale.sync.storage.gcs import upload_to_gcp

    data = os.urandom(1000 * 1024 + 7)
    (tmp_path / "f.bin").write_bytes(data)
    with serve_neptune3(storage_provider="gcp") as info:
        project = f"{info.workspace}/resume"
        create_project(project, api_token=info.api_token)
        write = _sign(info, project, "k/f.bin", "write", size=len(data))
        asyncio.run(upload_to_gcp(str(tmp_path / "f.bin"), "application/octet-stream", write.url, chunk_size=300 * 1024))

        # the protocol itself: a 300 KiB chunk keeps 256 KiB; a chunk after a gap changes nothing
        other = _sign(info, project, "k/g.bin", "write")
        session = httpx.post(other.url, headers={"x-goog-resumable": "start"}).headers["Location"]
        first = httpx.put(session, content=data[: 300 * 1024], headers={"Content-Range": f"bytes 0-{300 * 1024 - 1}/{len(data)}"})
        assert (first.status_code, first.headers["Range"]) == (308, f"bytes=0-{256 * 1024 - 1}")
        gap = httpx.put(session, content=b"x", headers={"Content-Range": f"bytes {len(data) - 1}-{len(data) - 1}/{len(data)}"})
        assert (gap.status_code, gap.headers["Range"]) == (308, f"bytes=0-{256 * 1024 - 1}")
        rest = httpx.put(session, content=data[256 * 1024 :], headers={"Content-Range": f"bytes {256 * 1024}-{len(data) - 1}/{len(data)}"})
        assert rest.status_code == 200

        for key in ("k/f.bin", "k/g.bin"):
            read = _sign(info, project, key, "read")
            signed = SignedFile(url=read.url, path=key, provider="gcp", project_identifier=ProjectIdentifier(project), permission="read")
            assert download_file(signed, tmp_path / "got").status == "success"
            assert (tmp_path / "got").read_bytes() == data


def test_injected_faults_on_object_storage_are_answered_as_each_provider_answers_them(tmp_path: Path) -> None:
    # The Neptune API's paths keep the JSON 429 with Retry-After; each storage path answers as its provider:
    # S3 503 SlowDown, Azure 503 ServerBusy (its code in x-ms-error-code too), GCS 429; XML, no Retry-After.
    from nmig.emulators.http import FaultPlan
    from nmig.emulators.neptune3.server import FAULT_EXEMPT
    from nmig.emulators.neptune3.storage_wire import AZURE_PREFIX, GCS_PREFIX, S3_PREFIX

    throttled = {S3_PREFIX: (503, "SlowDown"), AZURE_PREFIX: (503, "ServerBusy"), GCS_PREFIX: (429, "SlowDown")}
    with serve_neptune3(data_dir=tmp_path / "t", faults=FaultPlan(throttle_rate=1.0, exempt=FAULT_EXEMPT)) as info:
        api = httpx.get(info.url + "/api/leaderboard/v1/attributes/series/float")
        assert (api.status_code, api.headers.get("retry-after")) == (429, "1")
        assert api.json()["title"] == "Too many requests"
        for prefix, (status, code) in throttled.items():
            answer = httpx.put(info.url + prefix + "1/run/file.bin", content=b"x")
            assert answer.status_code == status, (prefix, answer.status_code)
            assert f"<Code>{code}</Code>" in answer.text and answer.headers["content-type"] == "application/xml"
            assert "retry-after" not in answer.headers
            if prefix == AZURE_PREFIX:
                assert answer.headers["x-ms-error-code"] == code
    failed: dict[int, set[str]] = {}
    with serve_neptune3(data_dir=tmp_path / "f", faults=FaultPlan(fail_rate=1.0, seed=5, exempt=FAULT_EXEMPT)) as info:
        for _ in range(12):
            answer = httpx.get(info.url + S3_PREFIX + "1/run/file.bin")
            failed.setdefault(answer.status_code, set()).add(answer.text.split("<Code>")[1].split("</Code>")[0])
    assert failed == {500: {"InternalError"}, 503: {"ServiceUnavailable"}}
