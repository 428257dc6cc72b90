"""Atomic file replacement, shared by the bundle writer, the importer's state file and the 3.x emulator's blobs.

It lives outside nmig.schema because the emulators and the importer's state are not part of the bundle format.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes, durable: bool = False) -> None:
    """Write via a temporary sibling and rename, so readers see the old content or the new, never half.
    `durable` also fsyncs (against power loss; a killed process needs only the rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FolderLock:
    """An exclusive advisory lock (flock) on a lock file, held while a command writes a folder; a second
    holder gets NmigError with `busy` as its message. Released when the block ends or the process dies.

    `shared`: many shared holders at once (the shards of one export), none while an exclusive one holds it."""

    def __init__(self, path: Path, busy: str, shared: bool = False) -> None:
        self._path = path
        self._busy = busy
        self._shared = shared
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        import fcntl

        from nmig.errors import NmigError

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NmigError(self._busy) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
