"""S3 uploads through the signed URLs the service hands out, in memory bounded by a chunk, not by the file.

Why: neptune-scale 0.30's S3 path reads the whole file into memory for a single PUT
(neptune_scale/sync/storage/s3.py, upload_to_s3_single: `content = await file.read()`) and, for a multipart
upload, reads every part before sending any (upload_to_s3_multipart builds one task per part holding its
bytes, then gathers them): a 4 GiB checkpoint peaked at 5.7 GB RSS. Its GCP path (chunks of the uploader's
chunk size) and Azure path (BlobClient blocks) are bounded already and stay the client's.

What is kept of the client: the same signed URLs, headers (Content-Type only, as the presigned PUT expects),
ETags and errors. A retryable failure (network, 5xx, 429: the client's _is_retryable_httpx_error) is
retried here for that one part with exponential back-off (the client's decorator, `backoff.on_predicate`,
retries on a return value and so never retries a raised error); when the part still fails it raises
NeptuneFileUploadTemporaryError, as the client does, so the client's uploader thread keeps the upload
request and tries the file again. Each body is streamed from the file in 1 MiB reads with its exact
Content-Length (a presigned S3 PUT takes no chunked encoding); a retry re-reads the part from the file.
Parts go one at a time: memory stays one read chunk per upload whatever the part size.

`install()` puts these two functions where FileUploaderThread looks them up (its module's globals);
tests/importer/test_client_internals.py checks the client's originals keep the signatures replaced here.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import httpx
from neptune_scale.exceptions import NeptuneFileUploadTemporaryError
from neptune_scale.sync import sync_process
from neptune_scale.sync.parameters import HTTP_CLIENT_NETWORKING_TIMEOUT, HTTP_REQUEST_MAX_TIME_SECONDS
from neptune_scale.sync.storage.s3 import _is_retryable_httpx_error

READ_CHUNK = 1024 * 1024
# Attempts per part before the failure goes back to the client's uploader (which retries the file later).
PART_ATTEMPTS = 5
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0


async def _body(path: str, offset: int, length: int) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            chunk = fh.read(min(READ_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} was truncated during its upload")
            left -= len(chunk)
            yield chunk


async def _put(url: str, path: str, offset: int, length: int, content_type: str) -> str:
    """PUT bytes [offset, offset+length) of the file; the ETag. Retryable errors retried with back-off, then
    raised as they came (the caller maps them as the client does)."""
    delay = FIRST_BACKOFF_S
    deadline = asyncio.get_running_loop().time() + HTTP_REQUEST_MAX_TIME_SECONDS
    for attempt in range(1, PART_ATTEMPTS + 1):
        client = _loop_client()
        try:
            headers = {"Content-Type": content_type, "Content-Length": str(length)}
            response = await client.put(url, headers=headers, content=_body(path, offset, length))
            response.raise_for_status()
            etag = response.headers.get("ETag", "")
            if not etag:
                raise ValueError("ETag header missing in S3 upload response")
            return str(etag).strip('"')
        except (httpx.RequestError, httpx.HTTPStatusError) as exc:
            if isinstance(exc, httpx.RequestError):
                _retire_loop_client(client)
            if not _is_retryable_httpx_error(exc) or attempt == PART_ATTEMPTS:
                raise
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable")


async def _mapped(coro):  # type: ignore[no-untyped-def]
    """The client's error mapping: retryable failures become NeptuneFileUploadTemporaryError."""
    try:
        return await coro
    except (httpx.RequestError, httpx.HTTPStatusError) as exc:
        if _is_retryable_httpx_error(exc):
            raise NeptuneFileUploadTemporaryError() from exc
        raise


# One httpx client per event loop, that is per uploader thread (FileUploaderThread has a loop of its own, and
# RunSink one uploader per run): the client's S3 functions open a new AsyncClient for every file, and so a
# new connection, ~7 ms of CPU per file on this machine (9.8 ms against 2.4 ms for a PUT of 64 KiB through a
# kept client). An AsyncClient serves concurrent requests of its loop (the uploader gathers up to 50).
_CLIENTS: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
# Clients a network failure retired (see _retire_loop_client), closed with their loop.
_RETIRED: dict[asyncio.AbstractEventLoop, list[httpx.AsyncClient]] = {}
_CLIENTS_LOCK = threading.Lock()


def _retire_loop_client(client: httpx.AsyncClient) -> None:
    """After a network failure (a time-out, a refused or dropped connection) the loop's later requests get a
    new client, so a failure never leaves them waiting on the old one's connection pool: httpcore 1.0.9 keeps
    a tunnel through a proxy whose TLS set-up failed in its pool, neither usable nor closed (its
    AsyncTunnelHTTPConnection, http_proxy.py:270-342, closes nothing when start_tls raises). The old client
    is closed with the loop, not now: other uploads of the loop may still be using it."""
    loop = asyncio.get_running_loop()
    with _CLIENTS_LOCK:
        if _CLIENTS.get(loop) is client:
            del _CLIENTS[loop]
            _RETIRED.setdefault(loop, []).append(client)


def _loop_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(loop)
        if client is None or client.is_closed:
            client = _CLIENTS[loop] = httpx.AsyncClient(timeout=httpx.Timeout(timeout=HTTP_CLIENT_NETWORKING_TIMEOUT))
        return client


def close_loop_client(loop: asyncio.AbstractEventLoop) -> None:
    """Close the client of `loop` (not running), before the loop itself is closed."""
    with _CLIENTS_LOCK:
        clients = [*_RETIRED.pop(loop, []), *filter(None, [_CLIENTS.pop(loop, None)])]
    if not loop.is_closed():
        for client in clients:
            loop.run_until_complete(client.aclose())


async def upload_to_s3_single(file_path: str, content_type: str, signed_url: str) -> None:
    """Like neptune_scale.sync.storage.s3.upload_to_s3_single, streaming the file."""
    size = os.stat(file_path).st_size

    async def run() -> None:
        await _put(signed_url, file_path, 0, size, content_type)

    await _mapped(run())


async def upload_to_s3_multipart(file_path: str, content_type: str, part_size: int, part_urls: list[str]) -> dict[int, str]:
    """Like neptune_scale.sync.storage.s3.upload_to_s3_multipart, one part at a time, each streamed."""
    size = os.stat(file_path).st_size
    if size == 0:
        raise ValueError("Cannot upload an empty file with multipart upload")
    if part_size <= 0 or len(part_urls) * part_size < size:
        raise ValueError(f"{len(part_urls)} parts of {part_size} bytes cannot hold a file of {size} bytes")

    async def run() -> dict[int, str]:
        etags: dict[int, str] = {}
        for index, url in enumerate(part_urls, start=1):
            offset = (index - 1) * part_size
            if offset >= size:
                raise OSError(f"{file_path} is shorter than its {len(part_urls)} parts")
            etags[index] = await _put(url, file_path, offset, min(part_size, size - offset), content_type)
        return etags

    return await _mapped(run())


def install() -> None:
    """Make the client's uploader thread use these S3 uploads (idempotent)."""
    sync_process.upload_to_s3_single = upload_to_s3_single  # type: ignore[assignment]
    sync_process.upload_to_s3_multipart = upload_to_s3_multipart  # type: ignore[assignment]
