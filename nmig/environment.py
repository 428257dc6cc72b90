"""The machine nmig runs on, checked before work starts and described in one line when it fails.

A full disk, a read-only bundle, a folder the user cannot write: found before anything is created in 3.x
(`require_writable`, `require_free`), and, when they strike midway, told as one line naming the disk
(`describe_os_error`) instead of a traceback or a hang.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from nmig.errors import NmigError

# What an import needs free next to its state file before it starts: the client's operation logs and one
# file at a time per worker are written there (a checkpoint larger than this is caught when it is written).
MIN_FREE_BYTES = 64 * 1024 * 1024

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def _disk(path: Path) -> str:
    try:
        return f"the disk mounted at {mount_point(path)}"
    except OSError:
        return "its disk"


def describe_os_error(exc: OSError, what: str | None = None) -> str:
    """One line for an error of the environment: which file, which disk, what to do."""
    name = exc.filename if exc.filename is not None else what
    shown = f"{name}" if name is not None else "a file"
    where = Path(str(name)) if name is not None else Path.cwd()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {shown}: {_disk(where)} is full; free space there and re-run the same command"
    if exc.errno == errno.EROFS:
        return f"cannot write {shown}: {_disk(where)} is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {shown}: permission denied"
    return f"{shown}: {exc.strerror or exc}"


def require_writable(folder: Path, what: str, hint: str = "") -> None:
    """NmigError unless `folder` exists (it is created) and a file can be written, synced and removed there."""
    probe = folder / f".nmig-probe-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"nmig")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        line = describe_os_error(exc, str(folder))
        raise NmigError(f"the {what} {folder} is not writable ({line})" + (f"; {hint}" if hint else "")) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def require_free(folder: Path, need: int, what: str, hint: str = "") -> None:
    """NmigError when the disk holding `folder` has less than `need` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # not measurable here; a full disk is still told as one line when it strikes
    if free < need:
        raise NmigError(
            f"{_disk(folder)} (holding the {what} {folder}) has {free // 1024} KiB free, {need // (1024 * 1024)} MiB "
            "needed" + (f"; {hint}" if hint else "")
        )
