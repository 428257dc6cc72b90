"""Where a bundle lives: a local folder, or a URL on object storage (s3://, gs://, az://; file:// is a folder).

Everything that reads or writes a bundle goes through one `BundleRoot`, got from `open_root(location,
storage_options)`; relpaths are "/"-separated and checked to be plain (no "", ".", ".."), so a name from a
bundle never reaches outside it on either kind.

- `LocalRoot` (a path, or a file:// URL) is safeio as before: nothing is followed, only regular files open,
  writes are rename-atomic, the lock is a flock.
- `ObjectRoot` (any other URL) uses fsspec, whose keyword arguments are exactly pandas' `storage_options`
  (the reason fsspec was chosen over pyarrow.fs: `nmig.schema.read_*("s3://...", storage_options=...)` takes
  what `pandas.read_parquet` takes). A store has no symlinks, FIFOs or renames: every object is written by
  one whole PUT (atomic per object), and an entity is published with its COMPLETE deleted first and put
  last, so COMPLETE is the commit point there as the rename is on disk. Sizes and checksums are verified
  and decompression bounded alike, by the reader, whichever root it reads from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from nmig.atomic import FolderLock, write_atomically
from nmig.errors import NmigError
from nmig.schema import safeio
from nmig.schema.format import COMPLETE, BundleError

Location = str | os.PathLike

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The fsspec implementation each scheme needs, and the nmig extra that installs it.
_EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
           "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure")}
# storage_options keys whose values are credentials (s3fs, gcsfs, adlfs names): never shown.
_SECRET_KEY = re.compile(r"secret|token|password|key|credential|sas|connection_string|sig", re.IGNORECASE)


def is_url(location: object) -> bool:
    """Whether a location names a URL (scheme://...) rather than a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def as_location(text: str | os.PathLike) -> Path | str:
    """What a command line gives, as options dataclasses hold it: a URL stays a string, anything else is a Path."""
    return text if is_url(text) else Path(text)


def local_path(location: Location) -> Path | None:
    """The folder a location names on this machine (a path or a file:// URL); None for an object store."""
    if not is_url(location):
        return Path(location)
    text = str(location)
    return Path(_file_url_path(text)) if text.lower().startswith("file://") else None


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """`--storage-options`: a JSON object, or KEY=VALUE pairs separated by commas (values stay strings)."""
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if text.startswith(("{", "[", '"')):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise NmigError(f"--storage-options is not valid JSON ({exc.msg} at {exc.pos})") from None
        if not isinstance(value, dict):
            raise NmigError("--storage-options must be a JSON object")
        return value
    pairs: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NmigError(f"--storage-options: expected KEY=VALUE, got {key.strip()[:40]!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def secrets_of(storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every string in storage_options under a credential-like key (nested dicts too): to redact from messages."""
    found: list[str] = []
    for key, value in (storage_options or {}).items():
        if isinstance(value, Mapping):
            found += secrets_of(value)
        elif isinstance(value, str) and value and _SECRET_KEY.search(str(key)):
            found.append(value)
    return found


def masked_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """storage_options fit to show: credential-like values replaced by "***"."""
    shown: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        if isinstance(value, Mapping):
            shown[key] = masked_options(value)
        else:
            shown[key] = "***" if _SECRET_KEY.search(str(key)) and value else value
    return shown


def open_root(location: Location | BundleRoot, storage_options: Mapping[str, Any] | None = None) -> BundleRoot:
    """The root of a bundle (or of any folder nmig writes) at a path or URL; a BundleRoot is returned as is."""
    if isinstance(location, BundleRoot):
        return location
    local = local_path(location)
    return LocalRoot(local) if local is not None else ObjectRoot(str(location), storage_options)


def _file_url_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise NmigError(f"{url}: a file:// URL names this machine's files (file:///path), not host {parts.netloc!r}")
    return unquote(parts.path) or "/"


class BundleRoot:
    """A folder of files addressed by relpaths. `path` names it: a Path for a local folder, the URL otherwise."""

    path: Path | str
    is_local: bool = False

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def join(self, relpath: str) -> Path | str:
        """How to name root/relpath to people (and, for a local root, the Path itself)."""
        raise NotImplementedError

    # reading (untrusted: see safeio)
    def open(self, relpath: str, where: str = "", base: str = "") -> IO[bytes]:
        """root/relpath opened for reading if it is a regular file; BundleError naming what it is otherwise,
        FileNotFoundError when absent. `where` prefixes messages, which name paths from `base` on."""
        raise NotImplementedError

    def kind(self, relpath: str) -> str | None:
        """"file", "folder", another kind's description ("a symlink", ...), or None when absent."""
        raise NotImplementedError

    def entries(self, relpath: str) -> list[tuple[str, str]]:
        """(name, kind) of each entry of the folder root/relpath, sorted; [] when it is not one."""
        raise NotImplementedError

    def walk(self, relpath: str = "") -> Iterator[tuple[str, str]]:
        """(path relative to root/relpath, kind) of everything below it, sorted; nothing is followed."""
        raise NotImplementedError

    def size(self, relpath: str) -> int | None:
        """The stored size of the regular file root/relpath, None when it is none."""
        raise NotImplementedError

    def read_bytes(self, relpath: str, limit: int) -> bytes:
        """The whole file (at most limit + 1 bytes are read, for the caller to refuse a larger one)."""
        with self.open(relpath) as fh:
            return fh.read(limit + 1)

    # writing (our own output)
    def prepare(self) -> None:
        """Create the root if needed and prove it writable (OSError otherwise)."""
        raise NotImplementedError

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Replace root/relpath whole: readers see the old content or the new, never half."""
        raise NotImplementedError

    def delete(self, relpath: str) -> None:
        """Remove root/relpath (a file, or a folder and all below it); nothing when absent."""
        raise NotImplementedError

    def publish(self, staged: Path, relpath: str) -> None:
        """Put the local folder `staged` at root/relpath in place of what is there, COMPLETE last; `staged`
        is consumed. A kill at any point leaves the old entity, or one without COMPLETE (not committed)."""
        raise NotImplementedError

    def work_dir(self) -> Path:
        """A local folder for work in progress (entities being built, spilled series): inside the bundle
        (DIR/.partial) for a local root, a temporary local folder for a store."""
        raise NotImplementedError

    def clean_work(self) -> None:
        """Remove work a killed process left (call only when no writer of this root runs)."""
        raise NotImplementedError

    def lock(self, name: str, busy: str) -> contextlib.AbstractContextManager[Any]:
        """Held while one command writes the root; a second holder gets NmigError(busy)."""
        raise NotImplementedError


class LocalRoot(BundleRoot):
    """A folder on this machine: safeio for every read, rename for every write, flock for the lock."""

    is_local = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def join(self, relpath: str) -> Path:
        return self.path / relpath if relpath else self.path

    def open(self, relpath: str, where: str = "", base: str = "") -> IO[bytes]:
        return safeio.open_regular(self.path, relpath, where, base)

    def kind(self, relpath: str) -> str | None:
        return safeio.lstat_kind(self.path, relpath)

    def entries(self, relpath: str) -> list[tuple[str, str]]:
        return safeio.entries(self.path, relpath)

    def walk(self, relpath: str = "") -> Iterator[tuple[str, str]]:
        return safeio.walk(self.path, relpath)

    def size(self, relpath: str) -> int | None:
        if self.kind(relpath) != "file":
            return None
        try:
            with self.open(relpath) as fh:
                return os.fstat(fh.fileno()).st_size
        except (OSError, BundleError):
            return None

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / f".nmig-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    def write_bytes(self, relpath: str, data: bytes) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data, durable=True)

    def delete(self, relpath: str) -> None:
        target = self.path / relpath
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def publish(self, staged: Path, relpath: str) -> None:
        target = self.path / relpath
        if not target.parent.is_dir():  # a stat, cheaper than a failing mkdir on slow file systems
            target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # Two renames: a kill between them leaves nothing in place, never a mix of old and new.
            old = staged.with_name(staged.name + ".old")
            os.rename(target, old)
            os.rename(staged, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staged, target)

    def work_dir(self) -> Path:
        from nmig.schema.format import PARTIAL_DIR

        return self.path / PARTIAL_DIR

    def clean_work(self) -> None:
        shutil.rmtree(self.work_dir(), ignore_errors=True)

    def lock(self, name: str, busy: str) -> contextlib.AbstractContextManager[Any]:
        return FolderLock(self.path / name, busy)


class ObjectRoot(BundleRoot):
    """A prefix on an object store through fsspec. There are no symlinks or special files to refuse; an
    object and a "folder" (a prefix) of one name cannot both be used, and each is what its listing says."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.path = url.rstrip("/")
        self._options = dict(storage_options or {})
        self._secrets = secrets_of(self._options)
        scheme = _URL.match(url).group(1).lower()  # type: ignore[union-attr]
        try:
            import fsspec
            from fsspec.core import url_to_fs
        except ImportError:  # pragma: no cover - fsspec is a dependency
            raise NmigError("object storage needs fsspec: pip install fsspec") from None
        try:
            self._fs, root = url_to_fs(self.path, **self._options)
        except ImportError:
            package, extra = _EXTRAS.get(scheme, (None, None))
            hint = f": pip install 'nmig[{extra}]' (or {package})" if extra else ""
            raise NmigError(f"{self}: {scheme}:// needs an fsspec implementation that is not installed{hint}") from None
        except ValueError as exc:
            if scheme not in fsspec.available_protocols():
                raise NmigError(f"{self}: unknown storage scheme {scheme}://") from None
            raise NmigError(f"{self}: {self._shown(exc)}") from None
        except TypeError as exc:  # an option the implementation does not take
            raise NmigError(f"{self}: bad --storage-options: {self._shown(exc)}") from None
        self._root = root.rstrip("/")
        if not self._root:
            raise NmigError(f"{url}: name a bucket (and a prefix): {scheme}://BUCKET/PREFIX")
        self._work: Path | None = None

    def _shown(self, exc: BaseException) -> str:
        text = str(exc)[:300]
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _key(self, relpath: str) -> str:
        return f"{self._root}/{'/'.join(safeio.plain_parts(relpath))}" if relpath else self._root

    def join(self, relpath: str) -> str:
        return f"{self.path}/{relpath}" if relpath else self.path

    @contextlib.contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        """Failures of the store as OSError (FileNotFoundError kept), with credentials masked: the reader
        reports them per entity like a bad disk, and NmigError's one line shows them."""
        try:
            yield
        except (FileNotFoundError, FileExistsError, BundleError):
            raise
        except Exception as exc:
            raise OSError(f"{what}: {type(exc).__name__}: {self._shown(exc)}") from None

    def _info(self, key: str) -> dict[str, Any] | None:
        try:
            with self._storage(f"{self.path}: cannot read"):
                return self._fs.info(key)
        except FileNotFoundError:
            return None

    def open(self, relpath: str, where: str = "", base: str = "") -> IO[bytes]:
        shown = relpath[len(base):] if relpath.startswith(base) else relpath
        key = self._key(relpath)
        info = self._info(key)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, f"{shown} is missing")
        if info.get("type") != "file":
            raise BundleError(f"{where}{shown} is a folder, not a regular file")
        with self._storage(f"{self.join(relpath)}: cannot open"):
            return self._fs.open(key, "rb", size=info.get("size"))  # type: ignore[no-any-return]

    def read_bytes(self, relpath: str, limit: int) -> bytes:
        """One ranged GET of the object as it is now. open() takes the size from a HEAD first, and an object
        another writer replaces in between (export.json, which the shards of one export rewrite while the
        others read it) would come back cut to the old size; a single GET is one version, whole."""
        key = self._key(relpath)
        info = self._info(key)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, f"{relpath} is missing")
        if info.get("type") != "file":
            raise BundleError(f"{relpath} is a folder, not a regular file")
        if not info.get("size"):
            return b""  # a range of an empty object is refused (416), and there is nothing to read
        with self._storage(f"{self.join(relpath)}: cannot read"):
            data = self._fs.cat_file(key, start=0, end=limit + 1)
        return bytes(data)

    def kind(self, relpath: str) -> str | None:
        info = self._info(self._key(relpath))
        if info is None:
            return None
        return "file" if info.get("type") == "file" else "folder"

    def entries(self, relpath: str) -> list[tuple[str, str]]:
        key = self._key(relpath)
        try:
            with self._storage(f"{self.join(relpath)}: cannot list"):
                self._fs.invalidate_cache(key)
                found = self._fs.ls(key, detail=True)
        except FileNotFoundError:
            return []
        result = []
        for item in found:
            name = str(item["name"]).rstrip("/")
            if name == key:  # a listing of an object (not a prefix) is the object itself
                return []
            result.append((name.rsplit("/", 1)[-1], "file" if item.get("type") == "file" else "folder"))
        return sorted(result)

    def walk(self, relpath: str = "") -> Iterator[tuple[str, str]]:
        key = self._key(relpath)
        try:
            with self._storage(f"{self.join(relpath)}: cannot list"):
                self._fs.invalidate_cache(key)
                found = self._fs.find(key, detail=True)
        except FileNotFoundError:
            return
        listed: dict[str, str] = {}
        for name, item in found.items():
            rel = str(name)[len(key) + 1 :]
            if not rel or str(name) == key:
                continue
            if item.get("type") == "file":
                parts = rel.split("/")
                for depth in range(1, len(parts)):
                    listed.setdefault("/".join(parts[:depth]), "folder")
                listed[rel] = "file"
        yield from sorted(listed.items())

    def size(self, relpath: str) -> int | None:
        info = self._info(self._key(relpath))
        return int(info["size"]) if info is not None and info.get("type") == "file" else None

    def prepare(self) -> None:
        probe = self._key(f".nmig-write-test-{os.getpid()}-{socket.gethostname()}")
        with self._storage(f"{self.path}: cannot write"):
            self._fs.pipe_file(probe, b"")
            self._fs.rm_file(probe)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        with self._storage(f"{self.join(relpath)}: cannot write"):
            self._fs.pipe_file(self._key(relpath), data)  # one PUT: atomic per object

    def delete(self, relpath: str) -> None:
        key = self._key(relpath)
        with self._storage(f"{self.join(relpath)}: cannot delete"):
            self._fs.invalidate_cache(key)
            if self._fs.exists(key):
                self._fs.rm(key, recursive=True)

    def publish(self, staged: Path, relpath: str) -> None:
        complete = staged / COMPLETE
        files = sorted(p for p in staged.rglob("*") if p.is_file() and p != complete)
        # COMPLETE goes first and comes back last: in between the entity is not committed, so a kill leaves
        # it to be exported again, never a mix of two versions passing for one.
        self.delete(f"{relpath}/{COMPLETE}")
        self.delete(relpath)
        with self._storage(f"{self.join(relpath)}: cannot write"):
            if files:
                self._fs.put(
                    [str(p) for p in files],
                    [self._key(f"{relpath}/{p.relative_to(staged).as_posix()}") for p in files],
                )
            if complete.is_file():
                self._fs.put_file(str(complete), self._key(f"{relpath}/{COMPLETE}"))
        shutil.rmtree(staged, ignore_errors=True)

    def work_dir(self) -> Path:
        if self._work is None:
            base = os.environ.get("NMIG_WORK_DIR") or None
            self._work = Path(tempfile.mkdtemp(prefix="nmig-work-", dir=base))
        return self._work

    def clean_work(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def lock(self, name: str, busy: str) -> contextlib.AbstractContextManager[Any]:
        return _ObjectLock(self, name, busy)


# A lock object is a lease: its holder writes it again every LOCK_RENEW_S, and one not renewed for
# LOCK_LEASE_S is stale, so a holder killed hard on another machine (a lost node, an OOM-killed pod whose
# index Kubernetes retries elsewhere) does not keep the prefix locked for ever.
# ASSUMPTION: the clocks of the machines sharing a bucket agree within a minute (NTP), far inside the lease.
LOCK_RENEW_S = 30.0
LOCK_LEASE_S = 300.0


class _ObjectLock:
    """A lock object created with a conditional PUT (If-None-Match: *, which S3 and MinIO honour): the
    second creator is refused. Deleted when the block ends, renewed while it lasts (a lease, see
    LOCK_LEASE_S); one left by a killed process on this machine (its pid gone), or not renewed within the
    lease, is taken over; any other is named in the error.
    ASSUMPTION: a store that ignores If-None-Match would let two writers in; docs/bundle-format.md says so."""

    def __init__(self, root: ObjectRoot, name: str, busy: str) -> None:
        self._root, self._name, self._busy = root, name, busy
        self._key = root._key(name)
        self._since = time.time()
        self._done = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self._since,
                           "renewed": time.time(), "lease_s": LOCK_LEASE_S}).encode()

    def __enter__(self) -> _ObjectLock:
        for _ in range(2):
            try:
                with self._root._storage(f"{self._root.join(self._name)}: cannot create the lock"):
                    self._root._fs.pipe_file(self._key, self._body(), mode="create")
                self._renewer = threading.Thread(target=self._renew, name="nmig-lock-lease", daemon=True)
                self._renewer.start()
                return self
            except FileExistsError:
                if not self._stale():
                    break
                self._root.delete(self._name)
        raise NmigError(
            f"{self._busy} (if none is running, delete the lock object {self._root.join(self._name)}; one not "
            f"renewed for {LOCK_LEASE_S:.0f} s is taken over by itself)"
        )

    def _renew(self) -> None:
        while not self._done.wait(LOCK_RENEW_S):
            with contextlib.suppress(OSError, NmigError):  # the next renewal tries again; the lease is long
                with self._root._storage(f"{self._root.join(self._name)}: cannot renew the lock"):
                    self._root._fs.pipe_file(self._key, self._body())

    def _stale(self) -> bool:
        try:
            holder = json.loads(self._root.read_bytes(self._name, 4096))
        except (OSError, ValueError, BundleError):
            return False
        if not isinstance(holder, dict):
            return False
        renewed = holder.get("renewed", holder.get("since"))
        if isinstance(renewed, (int, float)) and not isinstance(renewed, bool) and time.time() - renewed > LOCK_LEASE_S:
            return True  # its holder stopped renewing it: dead, wherever it ran
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._renewer is not None:
            self._renewer.join()
        with contextlib.suppress(OSError):
            self._root.delete(self._name)
