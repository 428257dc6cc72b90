"""File storage of the Neptune 3.x emulator: signed URLs answering as AWS, uploads (single and multipart), downloads.

The storage bridge answers every sign request with provider "aws", which keeps neptune-scale's uploads plain
HTTP PUTs (a multipart upload ends with the complete-upload call) and neptune-query's downloads plain GETs.
The signed URLs point at this emulator's own `/storage/object` endpoint and carry an HMAC signature over what
they allow (operation, project, storage key, upload id, part number, expiry), as presigned S3 URLs do.

Storage keys (the `path` the client chooses) never become file names: a blob lives at
`blobs/<sha256(project, key)>`, and parts at `uploads/<upload id>/<part number>` with a server-made upload id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmig.atomic import write_atomically
from nmig.emulators.http import Request, Response
from nmig.emulators.neptune3.store import Store, now_ms

if TYPE_CHECKING:
    from nmig.emulators.neptune3.server import Neptune3App

SIGN_PATH = "/api/storagebridge/v1/signedUrl"
COMPLETE_PATH = "/api/storagebridge/v1/s3/completeMultipartUpload"
OBJECT_PATH = "/storage/object"
URL_TTL_S = 3600  # ASSUMPTION: an hour, like the service's presigned URLs; an expired URL answers 400
MAX_KEY_BYTES = 4096
MAX_PARTS = 10_000  # S3's limit


def blob_name(project_pk: int, path: str) -> str:
    return hashlib.sha256(f"{project_pk}\0{path}".encode()).hexdigest()


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, base_url: str, claims: dict[str, Any]) -> str:
        claims = {**claims, "exp": int(time.time()) + URL_TTL_S}
        payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        signature = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        return f"{base_url}{OBJECT_PATH}?p={payload}&sig={signature}"

    def verify(self, request: Request) -> dict[str, Any] | Response:
        payload, signature = request.arg("p") or "", request.arg("sig") or ""
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not payload or not hmac.compare_digest(expected, signature):
            return _storage_error(403, "SignatureDoesNotMatch")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if claims.get("exp", 0) < time.time():
            # neptune-query treats 400 as "expired" and asks for a fresh URL
            return _storage_error(400, "ExpiredToken")
        return dict(claims)


def _storage_error(status: int, code: str) -> Response:
    """An error as object storage (S3, which the signed URLs stand for) answers one: an XML <Error> body."""
    return Response(status, f"<Error><Code>{code}</Code></Error>".encode(), content_type="application/xml")


def _record_blob(store: Store, project_pk: int, path: str, size: int, sha256: str) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO blobs (project_pk, path, blob_name, size, sha256, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (project_pk, path, blob_name(project_pk, path), size, sha256, now_ms()),
        )


def _stream(path: Path, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while data := source.read(chunk):
            yield data


def register(app: Neptune3App) -> None:
    router, store = app.router, app.store
    signer = Signer(bytes.fromhex(store.meta_value("url_secret", os.urandom(32).hex())))

    @router.route("POST", SIGN_PATH)
    def sign(request: Request, match: re.Match[str]) -> Response:
        try:
            files = request.json()["files"]
            assert isinstance(files, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return Response.error(400, "Bad request", "expected {\"files\": [...]}")
        answers = []
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                return Response.error(400, "Bad request", "each file needs a path")
            path, qualified = item["path"], item.get("project_identifier")
            if not path or len(path.encode("utf-8")) > MAX_KEY_BYTES:
                return Response.error(400, "Bad request", "invalid storage key")
            project = app.project_from_qualified(qualified if isinstance(qualified, str) else None)
            if project is None:
                return Response.error(403, "Forbidden", f"no access to project {qualified}")
            answer: dict[str, Any] = {"path": path, "project_identifier": project.qualified_name, "provider": "aws"}
            size, part_size = item.get("size"), app.multipart_part_size
            if item.get("permission") == "write":
                if isinstance(size, int) and size > part_size:
                    upload_id = uuid.uuid4().hex
                    parts = -(-size // part_size)
                    if parts > MAX_PARTS:
                        return Response.error(413, "Payload too large", "file too large")
                    with store.write() as conn:
                        conn.execute(
                            "INSERT INTO uploads (upload_id, project_pk, path, created_ms) VALUES (?, ?, ?, ?)",
                            (upload_id, project.project_pk, path, now_ms()),
                        )
                    answer["url"] = ""
                    answer["multipart"] = {
                        "upload_id": upload_id,
                        "part_size": part_size,
                        "part_urls": [
                            signer.sign(app.base_url, {"op": "part", "u": upload_id, "n": n}) for n in range(1, parts + 1)
                        ],
                    }
                else:
                    answer["url"] = signer.sign(app.base_url, {"op": "put", "pk": project.project_pk, "k": path})
            else:
                answer["url"] = signer.sign(app.base_url, {"op": "get", "pk": project.project_pk, "k": path})
            answers.append(answer)
        return Response.json({"files": answers})

    @router.route("PUT", OBJECT_PATH)
    def put_object(request: Request, match: re.Match[str]) -> Response:
        claims = signer.verify(request)
        if isinstance(claims, Response):
            return claims
        etag = '"' + hashlib.md5(request.body, usedforsecurity=False).hexdigest() + '"'
        if claims.get("op") == "put":
            project_pk, path = int(claims["pk"]), str(claims["k"])
            write_atomically(store.blob_file(blob_name(project_pk, path)), request.body, durable=True)
            _record_blob(store, project_pk, path, len(request.body), hashlib.sha256(request.body).hexdigest())
        elif claims.get("op") == "part":
            upload_id, number = str(claims["u"]), int(claims["n"])
            if not re.fullmatch(r"[0-9a-f]{32}", upload_id) or not 1 <= number <= MAX_PARTS:
                return _storage_error(400, "InvalidArgument")
            folder = store.upload_dir / upload_id
            folder.mkdir(exist_ok=True)
            write_atomically(folder / str(number), request.body, durable=True)
        else:
            return _storage_error(403, "AccessDenied")
        return Response(200, b"", headers={"ETag": etag})

    @router.route("GET", OBJECT_PATH)
    def get_object(request: Request, match: re.Match[str]) -> Response:
        claims = signer.verify(request)
        if isinstance(claims, Response):
            return claims
        if claims.get("op") != "get":
            return _storage_error(403, "AccessDenied")
        found = store.find_blob(int(claims["pk"]), str(claims["k"]))
        if found is None or not found[0].exists():
            return _storage_error(404, "NoSuchKey")
        return Response(200, _stream(found[0]), content_type="application/octet-stream")

    @router.route("POST", COMPLETE_PATH)
    def complete(request: Request, match: re.Match[str]) -> Response:
        try:
            body = request.json()
            upload_id, path = str(body["upload_id"]), str(body["path"])
            parts = sorted((int(p["part_number"]), str(p["etag"]).strip('"')) for p in body["parts"])
        except (ValueError, KeyError, TypeError):
            return Response.error(400, "Bad request", "malformed completeMultipartUpload body")
        row = store.connection().execute(
            "SELECT project_pk, path FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        if row is None:
            # A retried completion of an upload already completed succeeds again (idempotent), as S3 does.
            project = app.project_from_qualified(body.get("project_identifier"))
            if project is not None and store.find_blob(project.project_pk, path) is not None:
                return Response(204)
            return Response.error(400, "Bad request", "no such multipart upload")
        project_pk, upload_path = row
        if upload_path != path or [n for n, _ in parts] != list(range(1, len(parts) + 1)) or not parts:
            return Response.error(400, "Bad request", "parts or path do not match the upload")
        folder = store.upload_dir / upload_id
        target = store.blob_file(blob_name(project_pk, path))
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for number, etag in parts:
                    part_file = folder / str(number)
                    if not part_file.exists():
                        return Response.error(400, "Bad request", f"part {number} was not uploaded")
                    data = part_file.read_bytes()
                    if hashlib.md5(data, usedforsecurity=False).hexdigest() != etag:
                        return Response.error(400, "Bad request", f"part {number}: ETag mismatch")
                    out.write(data)
                    digest.update(data)
                    size += len(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        with store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blobs (project_pk, path, blob_name, size, sha256, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (project_pk, path, blob_name(project_pk, path), size, digest.hexdigest(), now_ms()),
            )
            conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        shutil.rmtree(folder, ignore_errors=True)
        return Response(204)
