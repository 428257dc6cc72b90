"""Opening files of an untrusted bundle: only regular files, found without following any symlink.

A bundle comes from another machine. Anything below its root may be a symlink pointing out of it (to
/etc, to another user's home), a FIFO that blocks `open()` forever, or a device. So every file is opened
from the bundle root one component at a time, each folder with O_NOFOLLOW | O_DIRECTORY relative to the
descriptor of its parent (no path is resolved twice, so nothing can be swapped in between a check and the
open), and the file itself with O_NOFOLLOW | O_NONBLOCK after an lstat that says it is a regular file;
its fstat is checked again on the open descriptor. The root itself is the folder the user named, symlink
or not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nmig.schema.format import BundleError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def plain_parts(relpath: str) -> list[str]:
    """The components of a plain relative path ("a/b"); BundleError for "", ".", ".." or an absolute path."""
    parts = relpath.split("/")
    if not relpath or any(part in ("", ".", "..") for part in parts):
        raise BundleError(f"{relpath[:80]!r} is not a plain relative path")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _open_dir(root: Path, folders: list[str], where: str) -> int:
    """A descriptor of root/folders..., each component a real folder (never a symlink)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for index, part in enumerate(folders):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                shown = "/".join(folders[: index + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                        what = _kind(mode)
                    except OSError:
                        what = "not a folder"
                    raise BundleError(f"{where}{shown} is {what}, not a folder (not followed)") from None
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(errno.ENOENT, f"{shown} is missing") from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular(root: Path, relpath: str, where: str = "", base: str = "") -> IO[bytes]:
    """root/relpath opened for reading, if it and every folder on the way is what it claims to be.

    BundleError names what it found instead (a symlink, a FIFO, a device); FileNotFoundError when it is
    absent. `where` prefixes messages ("run PROJ-1: "), which name paths from `base` (a prefix of relpath) on."""
    parts = plain_parts(relpath)
    shown = relpath[len(base):] if relpath.startswith(base) else relpath
    dir_fd = _open_dir(root, parts[:-1], where)
    try:
        try:
            mode = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"{shown} is missing") from None
        if not stat.S_ISREG(mode):
            raise BundleError(f"{where}{shown} is {_kind(mode)}, not a regular file (not followed)")
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped between the lstat and the open
            raise BundleError(f"{where}{shown} is {_kind(mode)}, not a regular file (not followed)")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def lstat_kind(root: Path, relpath: str) -> str | None:
    """What root/relpath is without following anything: "file", "folder", another kind's description
    ("a symlink", ...), or None when it (or a folder on the way) is absent or not a real folder."""
    parts = plain_parts(relpath)
    try:
        dir_fd = _open_dir(root, parts[:-1], "")
    except (OSError, BundleError):
        return None
    try:
        mode = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return _kind_of_mode(mode)


def is_regular(root: Path, relpath: str) -> bool:
    return lstat_kind(root, relpath) == "file"


def is_folder(root: Path, relpath: str) -> bool:
    return lstat_kind(root, relpath) == "folder"


def entries(root: Path, relpath: str) -> list[tuple[str, str]]:
    """(name, kind) of each entry of the real folder root/relpath, sorted by name; [] when it is not one."""
    try:
        fd = _open_dir(root, plain_parts(relpath) if relpath else [], "")
    except (OSError, BundleError):
        return []
    try:
        return [(name, _kind_of_mode(mode)) for name, mode in _modes(fd)]
    finally:
        os.close(fd)


def _modes(fd: int) -> list[tuple[str, int]]:
    with os.scandir(fd) as found:
        names = sorted(entry.name for entry in found)
    result = []
    for name in names:
        try:
            result.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode))
        except OSError:
            continue  # removed meanwhile
    return result


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return _kind(mode)


def walk(root: Path, relpath: str = "") -> Iterator[tuple[str, str]]:
    """(path relative to root/relpath, kind) of everything below root/relpath, depth first, sorted; folders
    are entered only when they are real folders, so a symlink is listed (as "a symlink") and never followed."""
    try:
        top = _open_dir(root, plain_parts(relpath) if relpath else [], "")
    except (OSError, BundleError):
        return
    try:
        yield from _walk_fd(top, "")
    finally:
        os.close(top)


def _walk_fd(fd: int, prefix: str) -> Iterator[tuple[str, str]]:
    for name, mode in _modes(fd):
        rel = f"{prefix}{name}"
        if stat.S_ISDIR(mode):
            yield rel, "folder"
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                yield from _walk_fd(child, rel + "/")
            finally:
                os.close(child)
        else:
            yield rel, _kind_of_mode(mode)
