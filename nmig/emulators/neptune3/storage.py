"""Object storage behind the 3.x emulator's signed URLs: the state, whichever provider's protocol reaches it.

The three wire protocols (S3 presigned PUT/GET with multipart parts, Azure Blob Put Blob/Put Block/Put Block
List/Get Blob, GCS resumable sessions) all end here, in the same few operations: store an object whole, stage
pieces of one (numbered parts, named blocks, or a byte stream appended at an offset) and commit them, read
one. Failures raise `StorageError` with a provider-neutral `kind`; nmig.emulators.neptune3.storage_wire turns a
kind into each provider's status code and error body.

Storage keys (the `path` the client chooses) never become file names: an object lives at
`blobs/<sha256(project, key)>` (see Store.blob_file), staged pieces under `uploads/<hex id>/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nmig.atomic import write_atomically
from nmig.emulators.neptune3.store import Store, now_ms

MAX_PARTS = 10_000  # S3's limit on parts per multipart upload; Azure allows 50,000 blocks
MAX_KEY_BYTES = 4096
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class StorageError(Exception):
    """A refused storage request. `kind` is one of: no_such_object, no_such_upload, invalid_part,
    invalid_range, bad_request (storage_wire maps each to every provider's own answer)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class StoredObject:
    file: Path
    size: int
    sha256: str
    created_ms: int

    @property
    def etag(self) -> str:
        """A stable entity tag for the stored bytes (unquoted)."""
        return self.sha256[:32]


def blob_name(project_pk: int, key: str) -> str:
    return hashlib.sha256(f"{project_pk}\0{key}".encode()).hexdigest()


def _assemble(target: Path, pieces: Iterable[Path]) -> tuple[int, str]:
    """Concatenate `pieces` into `target` atomically and durably; (size, sha256) of the result."""
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as source:
                    while data := source.read(1024 * 1024):
                        out.write(data)
                        digest.update(data)
                        size += len(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return size, digest.hexdigest()


class ObjectStorage:
    """The objects of every project of one Store, and the uploads in progress."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- whole objects -----------------------------------------------------------------------------------------

    def put(self, project_pk: int, key: str, data: bytes) -> StoredObject:
        target = self._store.blob_file(blob_name(project_pk, key))
        write_atomically(target, data, durable=True)
        return self._record(project_pk, key, len(data), hashlib.sha256(data).hexdigest())

    def get(self, project_pk: int, key: str) -> StoredObject:
        row = (
            self._store.connection()
            .execute("SELECT blob_name, size, sha256, created_ms FROM blobs WHERE project_pk = ? AND path = ?", (project_pk, key))
            .fetchone()
        )
        if row is None:
            raise StorageError("no_such_object", key)
        file = self._store.blob_file(row[0])
        if not file.exists():
            raise StorageError("no_such_object", key)
        return StoredObject(file, int(row[1]), str(row[2]), int(row[3]))

    def _record(self, project_pk: int, key: str, size: int, sha256: str) -> StoredObject:
        created = now_ms()
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blobs (project_pk, path, blob_name, size, sha256, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (project_pk, key, blob_name(project_pk, key), size, sha256, created),
            )
        return StoredObject(self._store.blob_file(blob_name(project_pk, key)), size, sha256, created)

    # -- uploads with a server-made id: S3 multipart parts, GCS resumable sessions ------------------------------

    def start_upload(self, project_pk: int, key: str) -> str:
        upload_id = uuid.uuid4().hex
        with self._store.write() as conn:
            conn.execute(
                "INSERT INTO uploads (upload_id, project_pk, path, created_ms) VALUES (?, ?, ?, ?)",
                (upload_id, project_pk, key, now_ms()),
            )
        return upload_id

    def upload(self, upload_id: str) -> tuple[int, str]:
        """(project_pk, key) of an upload in progress."""
        row = None
        if _UPLOAD_ID.fullmatch(upload_id):
            row = self._store.connection().execute("SELECT project_pk, path FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        if row is None:
            raise StorageError("no_such_upload", upload_id)
        return int(row[0]), str(row[1])

    def _upload_dir(self, upload_id: str) -> Path:
        folder = self._store.upload_dir / upload_id
        folder.mkdir(exist_ok=True)
        return folder

    def _finish_upload(self, upload_id: str) -> None:
        with self._store.write() as conn:
            conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        shutil.rmtree(self._store.upload_dir / upload_id, ignore_errors=True)

    def put_part(self, upload_id: str, number: int, data: bytes) -> str:
        """Stage part `number` (1-based) of a multipart upload; its ETag (the MD5 of its bytes, as S3 has it)."""
        self.upload(upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise StorageError("bad_request", f"part number {number} out of range")
        write_atomically(self._upload_dir(upload_id) / str(number), data, durable=True)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def complete_parts(self, upload_id: str, key: str, parts: list[tuple[int, str]]) -> StoredObject:
        """Join the listed parts (numbers 1..n in order, each with the ETag its upload answered)."""
        project_pk, upload_key = self.upload(upload_id)
        numbers = [number for number, _ in parts]
        if upload_key != key or not parts or numbers != list(range(1, len(parts) + 1)):
            raise StorageError("invalid_part", "parts or path do not match the upload")
        folder = self._upload_dir(upload_id)
        for number, etag in parts:
            part = folder / str(number)
            if not part.exists() or hashlib.md5(part.read_bytes(), usedforsecurity=False).hexdigest() != etag.strip('"'):
                raise StorageError("invalid_part", f"part {number} was not uploaded with that ETag")
        stored = self._commit(project_pk, key, [folder / str(n) for n in numbers])
        self._finish_upload(upload_id)
        return stored

    def append(self, upload_id: str, start: int, data: bytes, total: int | None, granularity: int) -> tuple[int, StoredObject | None]:
        """Append to a resumable upload at byte `start`; (bytes persisted, the object once `total` arrived).

        Bytes before what is persisted are skipped (a resent chunk), a gap is refused; when the upload is not
        complete only whole multiples of `granularity` are kept (the client resends the rest from the
        persisted offset it is told)."""
        project_pk, key = self.upload(upload_id)
        stream = self._upload_dir(upload_id) / "data"
        persisted = stream.stat().st_size if stream.exists() else 0
        if start > persisted:
            return persisted, None
        data = data[persisted - start :]
        end = persisted + len(data)
        if total is not None and end > total:
            raise StorageError("bad_request", "more bytes than the declared size")
        complete = total is not None and end == total
        if not complete:
            data = data[: len(data) - end % granularity] if end % granularity else data
        with open(stream, "ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        persisted += len(data)
        if not complete:
            return persisted, None
        stored = self._commit(project_pk, key, [stream])
        self._finish_upload(upload_id)
        return persisted, stored

    def persisted(self, upload_id: str) -> int:
        self.upload(upload_id)
        stream = self._store.upload_dir / upload_id / "data"
        return stream.stat().st_size if stream.exists() else 0

    # -- named blocks: Azure block blobs -----------------------------------------------------------------------

    def _block_dir(self, project_pk: int, key: str) -> Path:
        return self._upload_dir("blocks-" + blob_name(project_pk, key)[:40])

    def stage_block(self, project_pk: int, key: str, block_id: str, data: bytes) -> None:
        name = hashlib.sha256(block_id.encode()).hexdigest()
        write_atomically(self._block_dir(project_pk, key) / name, data, durable=True)

    def commit_blocks(self, project_pk: int, key: str, block_ids: list[str]) -> StoredObject:
        folder = self._block_dir(project_pk, key)
        pieces = [folder / hashlib.sha256(block_id.encode()).hexdigest() for block_id in block_ids]
        missing = [block_id for block_id, piece in zip(block_ids, pieces, strict=True) if not piece.exists()]
        if missing:
            raise StorageError("invalid_part", f"block {missing[0]!r} was not staged")
        stored = self._commit(project_pk, key, pieces)
        shutil.rmtree(folder, ignore_errors=True)  # uncommitted blocks are dropped at commit, as Azure does
        return stored

    def _commit(self, project_pk: int, key: str, pieces: list[Path]) -> StoredObject:
        size, sha256 = _assemble(self._store.blob_file(blob_name(project_pk, key)), pieces)
        return self._record(project_pk, key, size, sha256)
