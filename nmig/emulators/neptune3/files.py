"""File storage handlers of the 3.x emulator: the storage bridge (signed URLs, S3 multipart completion) and the
signed URLs' own endpoints, answering each provider's protocol for exactly the calls the clients make.

- the storage bridge (storagebridge_openapi.json): `POST /api/storagebridge/v1/signedUrl` (signed_url_generic,
  what both clients call) and `POST /api/storagebridge/v1/s3/completeMultipartUpload`;
- aws (neptune_scale/sync/storage/s3.py; neptune-query's GET): presigned `PUT` of a whole object or of one part
  (answered with its `ETag`), presigned `GET`;
- azure (neptune_scale/sync/storage/azure_storage.py: BlobClient.upload_blob; neptune-query: download_blob):
  Put Blob, Put Block, Put Block List, Get Blob with `x-ms-range`;
- gcp (neptune_scale/sync/storage/gcs.py; neptune-query's GET): `POST` with `x-goog-resumable: start` opening a
  session (201 + `Location`), `PUT` of chunks with `Content-Range` (308 + `Range` until the last, then 200),
  `GET`.

State is in nmig.emulators.neptune3.storage, URL shapes and error bodies in storage_wire; these handlers only
parse, call and answer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode
from xml.etree import ElementTree

from nmig.emulators.http import Request, Response
from nmig.emulators.neptune3 import storage_wire as wire
from nmig.emulators.neptune3.storage import (
    MAX_KEY_BYTES,
    MAX_PARTS,
    ObjectStorage,
    StorageError,
    StoredObject,
)

if TYPE_CHECKING:
    from nmig.emulators.neptune3.server import Neptune3App

SIGN_PATH = "/api/storagebridge/v1/signedUrl"
COMPLETE_PATH = "/api/storagebridge/v1/s3/completeMultipartUpload"
# GCS accepts chunks of a resumable upload in multiples of 256 KiB but the last (neptune_scale gcs.py, docstring)
GCS_CHUNK_GRANULARITY = 256 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")
Handler = Callable[[Request, "re.Match[str]"], Response]


def _stream(path: Path, start: int = 0, length: int | None = None, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as source:
        source.seek(start)
        left = length
        while left is None or left > 0:
            data = source.read(chunk if left is None else min(chunk, left))
            if not data:
                break
            if left is not None:
                left -= len(data)
            yield data


def _http_date(epoch_ms: int) -> str:
    return formatdate(epoch_ms / 1000, usegmt=True)


def answers_errors_as(provider: str) -> Callable[[Handler], Handler]:
    """A signed-URL handler whose refused URL or storage error is answered in `provider`'s own error shape
    (storage_wire.error), so each handler holds only its protocol."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def answered(request: Request, match: re.Match[str]) -> Response:
            try:
                return handler(request, match)
            except wire.UrlRefused as exc:
                return wire.error(provider, exc.kind, expired_at=exc.expired_at)
            except StorageError as exc:
                return wire.error(provider, exc.kind, exc.detail)

        return answered

    return wrap


def register(app: Neptune3App) -> None:
    router, store = app.router, app.store
    storage = ObjectStorage(store)
    signer = wire.UrlSigner(bytes.fromhex(store.meta_value("url_secret", os.urandom(32).hex())), app.url_ttl_s)

    # -- the storage bridge -------------------------------------------------------------------------------------

    @router.route("POST", SIGN_PATH)
    def sign(request: Request, match: re.Match[str]) -> Response:
        try:
            files = request.json()["files"]
            assert isinstance(files, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return Response.error(400, "Bad request", 'expected {"files": [...]}')
        answers = []
        provider, part_size = app.storage_provider, app.multipart_part_size
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                return Response.error(400, "Bad request", "each file needs a path")
            path, qualified = item["path"], item.get("project_identifier")
            if not path or len(path.encode("utf-8")) > MAX_KEY_BYTES:
                return Response.error(400, "Bad request", "invalid storage key")
            project = app.project_from_qualified(qualified if isinstance(qualified, str) else None)
            if project is None:
                return Response.error(403, "Forbidden", f"no access to project {qualified}")
            permission = "write" if item.get("permission") == "write" else "read"
            answer: dict[str, Any] = {"path": path, "project_identifier": project.qualified_name, "provider": provider}
            size = item.get("size")
            if provider == "aws" and permission == "write" and isinstance(size, int) and size > part_size:
                parts = -(-size // part_size)
                if parts > MAX_PARTS:
                    return Response.error(413, "Payload too large", "file too large")
                upload_id = storage.start_upload(project.project_pk, path)
                answer["url"] = ""
                answer["multipart"] = {
                    "upload_id": upload_id,
                    "part_size": part_size,
                    "part_urls": [
                        signer.url(app.base_url, "aws", "write", project.project_pk, path, upload_id, n)
                        for n in range(1, parts + 1)
                    ],
                }
            else:
                answer["url"] = signer.url(app.base_url, provider, permission, project.project_pk, path)
            answers.append(answer)
        return Response.json({"files": answers})

    @router.route("POST", COMPLETE_PATH)
    def complete(request: Request, match: re.Match[str]) -> Response:
        try:
            body = request.json()
            upload_id, path = str(body["upload_id"]), str(body["path"])
            parts = sorted((int(p["part_number"]), str(p["etag"])) for p in body["parts"])
        except (ValueError, KeyError, TypeError):
            return Response.error(400, "Bad request", "malformed completeMultipartUpload body")
        project = app.project_from_qualified(body.get("project_identifier"))
        if project is None:
            return Response.error(403, "Forbidden", "no access to the project")
        try:
            storage.complete_parts(upload_id, path, parts)
        except StorageError as exc:
            if exc.kind == "no_such_upload":
                # A retried completion of an upload already completed succeeds again (idempotent), as S3 does.
                try:
                    storage.get(project.project_pk, path)
                    return Response(204)
                except StorageError:
                    pass
            return Response.error(400, "Bad request", str(exc))
        return Response(204)

    # -- aws ------------------------------------------------------------------------------------------------------

    def s3_object(match: re.Match[str]) -> tuple[int, str]:
        return int(match.group(1)), unquote(match.group(2))

    @router.route("PUT", re.escape(wire.S3_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("aws")
    def s3_put(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        grant = signer.verify_s3(request, project_pk, key)
        if grant.upload_id:
            if storage.upload(grant.upload_id) != (project_pk, key):
                raise StorageError("no_such_upload")
            etag = storage.put_part(grant.upload_id, grant.part, request.body)
        else:
            storage.put(project_pk, key, request.body)
            etag = hashlib.md5(request.body, usedforsecurity=False).hexdigest()
        return Response(200, b"", headers={"ETag": f'"{etag}"'})

    @router.route("GET", re.escape(wire.S3_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("aws")
    def s3_get(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        signer.verify_s3(request, project_pk, key)
        stored = storage.get(project_pk, key)
        return Response(200, _stream(stored.file), content_type="application/octet-stream",
                        headers={"ETag": f'"{stored.etag}"', "Last-Modified": _http_date(stored.created_ms)})

    # -- azure ----------------------------------------------------------------------------------------------------

    def azure_headers(stored: StoredObject | None = None, md5: bytes | None = None) -> dict[str, str]:
        headers = {"x-ms-version": wire.AZURE_API_VERSION, "x-ms-request-id": os.urandom(16).hex(), "Date": formatdate(usegmt=True)}
        if stored is not None:
            headers.update({"ETag": f'"0x{stored.etag[:15].upper()}"', "Last-Modified": _http_date(stored.created_ms),
                            "x-ms-request-server-encrypted": "true"})
        if md5 is not None:
            headers["Content-MD5"] = base64.b64encode(md5).decode()
        return headers

    @router.route("PUT", re.escape(wire.AZURE_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("azure")
    def azure_put(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        comp = request.arg("comp")
        signer.verify_azure(request, project_pk, key, "w")
        md5 = hashlib.md5(request.body, usedforsecurity=False).digest()
        if comp is None:  # Put Blob
            if request.headers.get("x-ms-blob-type") != "BlockBlob":
                raise StorageError("bad_request", "x-ms-blob-type must be BlockBlob")
            return Response(201, b"", headers=azure_headers(storage.put(project_pk, key, request.body), md5))
        if comp == "block":  # Put Block
            block_id = request.arg("blockid") or ""
            if not block_id:
                raise StorageError("bad_request", "blockid missing")
            storage.stage_block(project_pk, key, block_id, request.body)
            return Response(201, b"", headers=azure_headers(md5=md5))
        if comp == "blocklist":  # Put Block List
            try:
                root = ElementTree.fromstring(request.body)
            except ElementTree.ParseError:
                raise StorageError("bad_request", "block list is not XML") from None
            ids = [element.text or "" for element in root if element.tag in ("Latest", "Uncommitted", "Committed")]
            return Response(201, b"", headers=azure_headers(storage.commit_blocks(project_pk, key, ids)))
        raise StorageError("bad_request", f"comp={comp} is not served")

    @router.route("GET", re.escape(wire.AZURE_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("azure")
    def azure_get(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        signer.verify_azure(request, project_pk, key, "r")
        stored = storage.get(project_pk, key)
        headers = azure_headers(stored)
        if_match = request.headers.get("if-match")
        if if_match and if_match not in ("*", headers["ETag"]):
            return Response(412, b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ConditionNotMet</Code>'
                            b"<Message>The condition specified using HTTP conditional header(s) is not met.</Message></Error>",
                            content_type="application/xml", headers={"x-ms-error-code": "ConditionNotMet"})
        headers.update({"x-ms-blob-type": "BlockBlob", "Accept-Ranges": "bytes", "x-ms-lease-state": "available",
                        "x-ms-lease-status": "unlocked", "x-ms-server-encrypted": "true",
                        "x-ms-creation-time": _http_date(stored.created_ms)})
        wanted = _RANGE.fullmatch(request.headers.get("x-ms-range") or request.headers.get("range") or "")
        if wanted is None:
            return Response(200, _stream(stored.file), content_type="application/octet-stream", headers=headers)
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)) if wanted.group(2) else stored.size - 1, stored.size - 1)
        if start >= stored.size:  # also every range of an empty blob, which the client then asks for whole
            answer = wire.error("azure", "invalid_range")
            answer.headers["Content-Range"] = f"bytes */{stored.size}"
            return answer
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        return Response(206, b"".join(_stream(stored.file, start, end - start + 1)), content_type="application/octet-stream",
                        headers=headers)

    # -- gcp ------------------------------------------------------------------------------------------------------

    @router.route("POST", re.escape(wire.GCS_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("gcp")
    def gcs_start(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        signer.verify_gcs(request, project_pk, key, "POST")
        if request.headers.get("x-goog-resumable") != "start":
            raise StorageError("bad_request", "only resumable uploads (x-goog-resumable: start) are served")
        upload_id = storage.start_upload(project_pk, key)
        query = urlencode([(name, value) for name, values in request.query.items() for value in values] + [("upload_id", upload_id)])
        return Response(201, b"", headers={"Location": f"{app.base_url}{request.path}?{query}", "X-GUploader-UploadID": upload_id})

    @router.route("PUT", re.escape(wire.GCS_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("gcp")
    def gcs_chunk(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        upload_id = request.arg("upload_id") or ""
        # A session URI stays valid after its signed URL expires (GCS: a session lasts a week).
        signer.verify_gcs(request, project_pk, key, "POST", check_expiry=False)
        if storage.upload(upload_id) != (project_pk, key):
            raise StorageError("no_such_upload")
        declared = _CONTENT_RANGE.fullmatch(request.headers.get("content-range") or "")
        if declared is None:
            raise StorageError("bad_request", "Content-Range missing or malformed")
        total = None if declared.group(3) == "*" else int(declared.group(3))
        if declared.group(1) is None:  # "bytes */total": a status query, or the whole of an empty file
            persisted, stored = storage.append(upload_id, storage.persisted(upload_id), b"", total, GCS_CHUNK_GRANULARITY)
        else:
            start, end = int(declared.group(1)), int(declared.group(2))
            if end - start + 1 != len(request.body):
                raise StorageError("bad_request", "Content-Range does not match the body's length")
            persisted, stored = storage.append(upload_id, start, request.body, total, GCS_CHUNK_GRANULARITY)
        if stored is not None:
            return Response(200, b"", headers={"ETag": f'"{stored.etag}"', "x-goog-generation": str(stored.created_ms * 1000),
                                               "x-goog-stored-content-length": str(stored.size)})
        headers = {"Range": f"bytes=0-{persisted - 1}"} if persisted else {}
        return Response(308, b"", headers={**headers, "X-GUploader-UploadID": upload_id})

    @router.route("GET", re.escape(wire.GCS_PREFIX) + r"(\d+)/(.+)")
    @answers_errors_as("gcp")
    def gcs_get(request: Request, match: re.Match[str]) -> Response:
        project_pk, key = s3_object(match)
        signer.verify_gcs(request, project_pk, key, "GET")
        stored = storage.get(project_pk, key)
        return Response(200, _stream(stored.file), content_type="application/octet-stream",
                        headers={"ETag": f'"{stored.etag}"', "x-goog-stored-content-length": str(stored.size)})
