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
