"""Reading a bundle: untrusted input, checked as it is read.

Files inside an entity are looked up only by validated hex content hashes or by the fixed names of the
format; nothing named in a manifest ever becomes a path. A damaged entity is reported (`problems`,
`incomplete_reason`, `verify()`) while the other entities of the bundle still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from nmig.schema.format import (
    COMPLETE,
    EXPORT_INFO,
    FILES_DIR,
    KIND_FOLDERS,
    MANIFEST,
    SERIES_FILE_NAMES,
    SERIES_SCHEMAS,
    SERIES_TYPE_KIND,
    BundleError,
    check_format,
    file_relpath,
    is_content_hash,
    path_runs,
    safe_component,
    series_file_name,
)
from nmig.schema.manifest import MAX_FILE_BYTES, manifest_problems
from nmig.schema.store import BundleRoot, Location, open_root

_READ_CHUNK = 1024 * 1024
# Manifests and COMPLETE are small; a huge one is damage or hostility, not data worth reading into memory.
_MAX_JSON_BYTES = 512 * 1024 * 1024
# zstd's own default limit (2^27, 128 MiB), said explicitly: a frame asking for a larger window is refused
# instead of allocating it. The writer's level 3 uses at most 2^21.
_MAX_WINDOW = 1 << 27


def _load_json(root: BundleRoot, relpath: str, what: str) -> Any:
    """A JSON document of the bundle, opened safely (safeio, or a store's object) and read to at most
    _MAX_JSON_BYTES."""
    try:
        data = root.read_bytes(relpath, _MAX_JSON_BYTES)
        if len(data) > _MAX_JSON_BYTES:
            raise BundleError(f"{what} is implausibly large")
        return json.loads(data)
    except FileNotFoundError:
        raise BundleError(f"{what} is missing") from None
    except BundleError as exc:
        raise BundleError(f"{what}: {exc}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"{what} is unreadable: {str(exc)[:200]}") from None


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    with stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class VerifiedStream(io.RawIOBase):
    """A decompressing stream over files/<hash>.zst that checks size and sha256 when it reaches the end.

    A mismatch raises BundleError from the read that hits the end, so a consumer never silently gets
    damaged content in full.
    """

    def __init__(self, raw: IO[bytes], content_hash: str, size: int | None) -> None:
        self._raw = raw
        self._reader = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW).stream_reader(
            self._raw, read_across_frames=True
        )
        self._hash = content_hash
        self._size = size
        self._digest = hashlib.sha256()
        self._read = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._reader.read(len(buffer))
        except zstandard.ZstdError as exc:
            raise BundleError(f"file {self._hash[:12]}... is corrupt: {exc}") from None
        if data:
            self._digest.update(data)
            self._read += len(data)
            if self._size is not None and self._read > self._size:
                raise BundleError(f"file {self._hash[:12]}... is larger than the manifest says")
            buffer[: len(data)] = data
            return len(data)
        if not self._checked:
            self._checked = True
            if self._size is not None and self._read != self._size:
                raise BundleError(
                    f"file {self._hash[:12]}... has {self._read} bytes, the manifest says {self._size}"
                )
            if self._digest.hexdigest() != self._hash:
                raise BundleError(f"file {self._hash[:12]}... does not match its sha256")
        return 0

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._raw.close()
        super().close()


class EntityBundle:
    """One run/model/model version folder. Construction never raises for damage: see `problems`."""

    def __init__(
        self,
        path: Location,
        kind: str,
        sys_id: str,
        root: Location | BundleRoot | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """`root`: the bundle folder (or URL) `path` is in. Every file is opened from there without following
        a symlink (safeio); without it, from `path` itself. `storage_options`: for a URL, fsspec's (as pandas')."""
        self.kind = kind
        self.sys_id = sys_id
        if root is None:
            self._root = open_root(path, storage_options)
            self._prefix = ""
        else:
            self._root = open_root(root, storage_options)
            self._prefix = _relative(path, self._root) + "/"
        # A Path for a local entity folder, the URL on a store
        self.path: Path | str = self._root.join(self._prefix.rstrip("/"))
        self.problems: list[str] = []  # found while loading (unreadable manifest, wrong version, ...)
        self.manifest: dict[str, Any] = {}
        self._checksums: dict[str, str] | None = None
        self._sizes: dict[str, int] | None = None
        self._bad_attributes: set[int] = set()
        try:
            manifest = _load_json(self._root, self._prefix + MANIFEST, f"{kind} {sys_id}: manifest.json")
            check_format(manifest, f"{kind} {sys_id}: manifest.json")
            self.manifest = manifest
        except BundleError as exc:
            self.problems.append(str(exc))
        else:
            if manifest.get("sys_id") != sys_id or manifest.get("kind") != kind:
                self.problems.append(
                    f"{kind} {sys_id}: manifest names {manifest.get('kind')!r} {manifest.get('sys_id')!r}"
                )
            shape, self._bad_attributes = manifest_problems(manifest)
            self.problems += [f"{kind} {sys_id}: manifest.json: {p}" for p in shape]
            for key in ("attributes", "skipped", "errors"):
                if not isinstance(manifest.get(key, []), list):
                    self.manifest[key] = []
        if self._kind_of(COMPLETE) is not None:
            try:
                doc = _load_json(self._root, self._prefix + COMPLETE, f"{kind} {sys_id}: COMPLETE")
                checksums = doc.get("sha256") if isinstance(doc, dict) else None
                if not isinstance(checksums, dict) or not all(
                    isinstance(k, str) and is_content_hash(v) for k, v in checksums.items()
                ):
                    raise BundleError(f"{kind} {sys_id}: COMPLETE has no valid sha256 table")
                self._checksums = checksums
            except BundleError as exc:
                self.problems.append(str(exc))

    def __repr__(self) -> str:
        return f"EntityBundle({self.kind} {self.sys_id}, complete={self.complete})"

    # ---- state -------------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """COMPLETE present and parsed, manifest readable and of a supported version, no errors recorded.
        (Checksums are checked by `verify()`.)"""
        return self._checksums is not None and not self.problems and not self.errors

    @property
    def version(self) -> str | None:
        """Which export of the entity this is: the sha256 of its manifest as COMPLETE records it (every export
        writes a new manifest, if only for its exported_at), None without COMPLETE. `nmig import` records it for
        each run it imports, and re-syncs a run whose bundle has another version (an `export --update`)."""
        return self._checksums.get(MANIFEST) if self._checksums else None

    @property
    def incomplete_reason(self) -> str | None:
        """Why the entity cannot be used as a whole (None when complete): one line for a report."""
        if self.problems:
            return "; ".join(self.problems)
        if self.errors:
            shown = "; ".join(f"{e.get('path') or '-'}: {e.get('message')}" for e in self.errors[:3])
            more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            return f"export failed for {len(self.errors)} item(s): {shown}{more}"
        if self._checksums is None:
            return "export did not finish (no COMPLETE marker)"
        return None

    @property
    def attributes(self) -> list[dict[str, Any]]:
        """The manifest's attributes that conform to its schema (the others are in `problems`)."""
        return [
            a for i, a in enumerate(self.manifest.get("attributes", []))
            if isinstance(a, dict) and i not in self._bad_attributes
        ]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [s for s in self.manifest.get("skipped", []) if isinstance(s, dict)]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.manifest.get("errors", []) if isinstance(e, dict)]

    @property
    def custom_run_id(self) -> str | None:
        value = self.manifest.get("custom_run_id")
        return value if isinstance(value, str) else None

    def attribute(self, path: str) -> dict[str, Any] | None:
        return next((a for a in self.attributes if a.get("path") == path), None)

    # ---- safe access ---------------------------------------------------------------------------------

    def open_relpath(self, relpath: str) -> IO[bytes]:
        """A file of the entity folder (format names only), opened without following symlinks and only if
        it is a regular file: BundleError otherwise, FileNotFoundError when absent."""
        return self._root.open(self._prefix + relpath, f"{self.kind} {self.sys_id}: ", self._prefix)

    def _kind_of(self, relpath: str) -> str | None:
        return self._root.kind(self._prefix + relpath)

    def stored_bytes(self) -> int:
        """The stored (compressed) size of every regular file under files/."""
        folder = self._prefix + FILES_DIR
        return sum(
            self._root.size(f"{folder}/{rel}") or 0 for rel, what in self._root.walk(folder) if what == "file"
        )

    def _sha256_of(self, relpath: str) -> str:
        return _sha256(self.open_relpath(relpath))

    # ---- series ------------------------------------------------------------------------------------

    def series_path(self, kind: str) -> Path | str | None:
        """The Parquet file of a series kind (a Path, or its URL on a store), or None when the entity has no
        points of that kind."""
        name = self._series_name(kind)
        return None if name is None else self._root.join(self._prefix + name)

    def _series_name(self, kind: str) -> str | None:
        name = series_file_name(kind)
        return name if self._kind_of(name) == "file" else None

    def _check_checksum(self, relpath: str) -> None:
        if self._checksums is None:
            return  # an incomplete entity has no checksums to check against
        expected = self._checksums.get(relpath)
        if expected is None:
            raise BundleError(f"{self.kind} {self.sys_id}: {relpath} is not listed in COMPLETE")
        if self._sha256_of(relpath) != expected:
            raise BundleError(f"{self.kind} {self.sys_id}: {relpath} does not match its checksum")

    def open_series(self, kind: str, verify: bool = True) -> pq.ParquetFile | None:
        """The series file, schema-checked (and its checksum verified unless verify=False)."""
        name = self._series_name(kind)
        if name is None:
            return None
        if verify:
            self._check_checksum(name)
        try:
            parquet = pq.ParquetFile(self.open_relpath(name))
        except (OSError, pa.ArrowException) as exc:
            raise BundleError(f"{self.kind} {self.sys_id}: {name} is unreadable: {exc}") from None
        expected = SERIES_SCHEMAS[kind]
        actual = parquet.schema_arrow
        for field in expected:
            index = actual.get_field_index(field.name)
            if index < 0 or not _compatible(actual.field(index).type, field.type):
                raise BundleError(
                    f"{self.kind} {self.sys_id}: {name} column {field.name!r} missing or not {field.type}"
                )
        return parquet

    def iter_series(
        self, kind: str, batch_rows: int = 65536, columns: list[str] | None = None, verify: bool = True
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows of series_<kind>.parquet in file order: grouped by path, paths sorted, each
        path's points in the order the exporter got them. Memory is bounded by one row group."""
        parquet = self.open_series(kind, verify=verify)
        if parquet is None:
            return
        try:
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise BundleError(f"{self.kind} {self.sys_id}: {series_file_name(kind)} is damaged: {exc}") from None
        finally:
            parquet.close()

    # ---- files -------------------------------------------------------------------------------------

    def _known_size(self, content_hash: str) -> int | None:
        """The original size the manifest (or series_file.parquet) records for a hash: it bounds what a
        decompression may produce, so a hostile tiny .zst cannot expand without limit."""
        if self._sizes is None:
            sizes, _ = self.file_references()  # verify() reports a damaged series file
            self._sizes = {h: s for h, s in sizes.items() if isinstance(s, int) and not isinstance(s, bool)}
        return self._sizes.get(content_hash)

    def file_references(self) -> tuple[dict[str, Any], str | None]:
        """Every stored file the entity refers to, hash -> the size recorded for it (file and fileSet attributes,
        then series_file.parquet), as recorded: hashes and sizes are not validated here (verify() does that);
        and why series_file.parquet is unreadable, when it is."""
        refs: dict[str, Any] = {}
        for attribute in self.attributes:
            type_ = attribute.get("type")
            if type_ == "file":
                info = attribute.get("file") if isinstance(attribute.get("file"), dict) else {}
                refs[str(info.get("hash"))] = info.get("size")
            elif type_ == "fileSet":
                for entry in attribute.get("entries") or []:
                    if isinstance(entry, dict):
                        refs[str(entry.get("hash"))] = entry.get("size")
        file_series = self._series_name("file")
        if file_series is not None:
            try:
                with self.open_relpath(file_series) as fh:
                    table = pq.read_table(fh, columns=["file_hash", "file_size"])
                hashes = [str(h) for h in table.column("file_hash").to_pylist()]
                refs.update(zip(hashes, table.column("file_size").to_pylist(), strict=True))
            except (OSError, pa.ArrowException) as exc:
                return refs, f"series_file.parquet is unreadable: {exc}"
        return refs, None

    def open_file(self, content_hash: str, size: int | None = None) -> IO[bytes]:
        """A binary stream of the original content; raises BundleError at its end if size/sha256 differ."""
        relpath = file_relpath(content_hash)  # validates: the only name ever used for a stored file
        if size is None:
            size = self._known_size(content_hash)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            # an undeclared size would let a tiny .zst expand without bound
            raise BundleError(f"{self.kind} {self.sys_id}: file {content_hash[:12]}... has no valid declared size ({size!r})")
        try:
            raw = self.open_relpath(relpath)
        except FileNotFoundError:
            raise BundleError(f"{self.kind} {self.sys_id}: file {content_hash[:12]}... is missing") from None
        return io.BufferedReader(VerifiedStream(raw, content_hash, size))

    def read_file(self, content_hash: str, size: int | None = None) -> bytes:
        with self.open_file(content_hash, size) as stream:
            return stream.read()

    # ---- verification --------------------------------------------------------------------------------

    def verify(self, deep: bool = False) -> list[str]:
        """Every problem found, one line each: checksums, missing or extra files, manifest references,
        series row counts against the manifest; with deep=True also every file's size and sha256."""
        where = f"{self.kind} {self.sys_id}"
        problems = list(self.problems)
        if self.problems and not self.manifest:
            return problems
        on_disk, special = _list_files(self._root, self._prefix)
        if self._checksums is not None:
            for relpath, expected in sorted(self._checksums.items()):
                if not _is_format_relpath(relpath):
                    problems.append(f"{where}: COMPLETE lists an unexpected path {relpath[:80]!r}")
                elif relpath not in on_disk:
                    problems.append(f"{where}: {relpath} is missing")
                else:
                    try:
                        if self._sha256_of(relpath) != expected:
                            problems.append(f"{where}: {relpath} does not match its checksum")
                    except (OSError, BundleError) as exc:
                        problems.append(f"{where}: {relpath} is unreadable: {exc}")
            listed = set(self._checksums) | {COMPLETE}
            problems += [f"{where}: {p} is not listed in COMPLETE" for p in sorted(on_disk - listed)]
        else:
            problems += [
                f"{where}: unexpected file {p[:80]!r}"
                for p in sorted(on_disk)
                if not _is_format_relpath(p) and p != COMPLETE
            ]
        problems += [f"{where}: {p} is {what}; not a regular file (not followed)" for p, what in sorted(special.items())]
        problems += self._check_references(on_disk, deep)
        problems += self._check_series_counts()
        return problems

    def _check_references(self, on_disk: set[str], deep: bool) -> list[str]:
        where = f"{self.kind} {self.sys_id}"
        refs, unreadable = self.file_references()
        problems = [f"{where}: {unreadable}"] if unreadable else []
        for content_hash, size in sorted(refs.items()):
            if not is_content_hash(content_hash):
                problems.append(f"{where}: invalid file reference {content_hash[:80]!r}")
            elif file_relpath(content_hash) not in on_disk:
                problems.append(f"{where}: file {content_hash} is missing")
            elif deep:
                try:
                    with self.open_file(content_hash, size) as stream:
                        while stream.read(_READ_CHUNK):
                            pass
                except BundleError as exc:
                    problems.append(f"{where}: {exc}")
        return problems

    def _check_series_counts(self) -> list[str]:
        where = f"{self.kind} {self.sys_id}"
        expected: dict[str, dict[str, int]] = {}
        for attribute in self.attributes:
            kind = SERIES_TYPE_KIND.get(str(attribute.get("type")))
            if kind is not None:
                expected.setdefault(kind, {})[str(attribute.get("path"))] = attribute.get("points")
        problems = []
        for kind in SERIES_SCHEMAS:
            counts: dict[str, int] = {}
            try:
                for batch in self.iter_series(kind, columns=["path"], verify=False, batch_rows=1 << 20):
                    for path, start, end in path_runs(batch.column(0)):  # not value_counts: pyarrow.compute
                        counts[path] = counts.get(path, 0) + end - start  # is an import of 0.13 s of CPU
            except BundleError as exc:
                problems.append(str(exc))
                continue
            wanted = {p: c for p, c in expected.get(kind, {}).items() if c}
            if counts != wanted:
                problems.append(f"{where}: series_{kind}.parquet rows do not match the manifest's points")
        return problems


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_dictionary(expected):
        return actual == expected or (pa.types.is_dictionary(actual) and actual.value_type == pa.string()) or (
            actual in (pa.string(), pa.large_string())
        )
    return actual == expected


def _is_format_relpath(relpath: str) -> bool:
    if relpath == MANIFEST or relpath in SERIES_FILE_NAMES:
        return True
    prefix = f"{FILES_DIR}/"
    return relpath.startswith(prefix) and relpath.endswith(".zst") and is_content_hash(relpath[len(prefix) : -4])


def _relative(path: Location, root: BundleRoot) -> str:
    """path (inside root) relative to it, as a plain relpath."""
    if root.is_local:
        return Path(path).relative_to(Path(root.path)).as_posix()
    text, base = str(path).rstrip("/"), f"{str(root.path).rstrip('/')}/"
    if not text.startswith(base):
        raise ValueError(f"{text} is not inside {root.path}")
    return text[len(base):]


def _list_files(root: BundleRoot, prefix: str) -> tuple[set[str], dict[str, str]]:
    """(regular files under root/prefix, relative to it; everything else that is neither such a file nor a
    real folder -> what it is). Nothing is followed, so a listed file that is a symlink shows up as missing."""
    files: set[str] = set()
    special: dict[str, str] = {}
    for relpath, kind in root.walk(prefix.rstrip("/")):
        if kind == "file":
            files.add(relpath)
        elif kind != "folder":
            special[relpath] = kind
    return files, special


class Bundle:
    """A bundle folder (or a URL on object storage, see nmig.schema.store): `info` (export.json) and its
    entities. Raises BundleError if it is not a bundle or is of a newer major format version."""

    def __init__(self, path: Location | BundleRoot, storage_options: dict[str, Any] | None = None) -> None:
        self.root = open_root(path, storage_options)
        self.path: Path | str = self.root.path  # a Path for a local bundle, the URL on a store
        if self.root.is_local and not Path(self.path).is_dir():
            raise BundleError(f"{self.path}: no such folder")
        try:
            found = self.root.kind(EXPORT_INFO)
        except OSError as exc:
            raise BundleError(str(exc)) from None
        if found is None:
            raise BundleError(f"{self.path} is not an nmig bundle (it has no {EXPORT_INFO})")
        info = _load_json(self.root, EXPORT_INFO, f"{self.path}/{EXPORT_INFO}")
        check_format(info, f"bundle {self.path}")
        self.info: dict[str, Any] = info
        for folder in KIND_FOLDERS.values():
            what = self.root.kind(folder)
            if what not in (None, "folder"):
                # e.g. runs/ a symlink to another bundle: its runs must not pass for this one's
                raise BundleError(f"bundle {self.path}: {folder} is {what}, not a folder; refusing to follow it")

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r})"

    def sys_ids(self, kind: str = "run") -> list[str]:
        """Folder names of one kind, sorted; names that are not safe ids are left out (see `strays`)."""
        return [name for name, ok in self._names(kind) if ok]

    def strays(self, kind: str = "run") -> list[str]:
        """Entries in the kind's folder that cannot be entities (unsafe names, plain files)."""
        return [name for name, ok in self._names(kind) if not ok]

    def _names(self, kind: str) -> list[tuple[str, bool]]:
        if kind not in KIND_FOLDERS:
            raise BundleError(f"unknown entity kind {kind!r} (expected one of {', '.join(KIND_FOLDERS)})")
        folder = KIND_FOLDERS[kind]
        if self.root.kind(folder) != "folder":
            return []
        result = []
        for name, what in self.root.entries(folder):
            ok = what == "folder"
            try:
                safe_component(name)
            except BundleError:
                ok = False
            result.append((name, ok))
        return result

    def entities(self, kind: str = "run") -> list[EntityBundle]:
        """Every entity of a kind, sorted by id; damaged ones included (see EntityBundle.problems)."""
        names = self.sys_ids(kind)
        folder = KIND_FOLDERS[kind]
        return [EntityBundle(self.root.join(f"{folder}/{name}"), kind, name, root=self.root) for name in names]

    def committed(self, kind: str = "run") -> dict[str, tuple[bool, str | None]]:
        """{sys_id: (committed whole, its manifest's modification_time)} of every entity of a kind, read cheaply
        for an export's resume: an entity counts as committed when its COMPLETE records the sha256 of the
        manifest that is there (the writer commits COMPLETE last and only without errors, so the manifest is
        the one it wrote whole). Unlike `entities()`, the manifest is not validated attribute by attribute
        (a run's import, `inspect --check` and `verify()` do that): ~8 ms per run, most of a resume of 100,000
        runs, for a decision that needs none of it (benchmarks/bench_many_runs.py)."""
        folder = KIND_FOLDERS[kind]
        found: dict[str, tuple[bool, str | None]] = {}
        for sys_id in self.sys_ids(kind):
            found[sys_id] = _committed(self.root, f"{folder}/{sys_id}/", kind, sys_id)
        return found

    def entity(self, kind: str, sys_id: str) -> EntityBundle:
        if kind not in KIND_FOLDERS:
            raise BundleError(f"unknown entity kind {kind!r} (expected one of {', '.join(KIND_FOLDERS)})")
        safe_component(sys_id)
        relpath = f"{KIND_FOLDERS[kind]}/{sys_id}"
        if self.root.kind(relpath) != "folder":
            raise BundleError(f"no {kind} {sys_id!r} in bundle {self.path}")
        return EntityBundle(self.root.join(relpath), kind, sys_id, root=self.root)


def _committed(root: BundleRoot, prefix: str, kind: str, sys_id: str) -> tuple[bool, str | None]:
    """(COMPLETE vouches for the manifest there, the manifest's modification_time): see Bundle.committed."""
    try:
        data = root.read_bytes(prefix + MANIFEST, _MAX_JSON_BYTES)
        manifest = json.loads(data)
    except (OSError, ValueError, RecursionError, BundleError):
        return False, None
    if not isinstance(manifest, dict):
        return False, None
    modified = manifest.get("modification_time") if isinstance(manifest.get("modification_time"), str) else None
    try:
        check_format(manifest, "manifest.json")
        complete = _load_json(root, prefix + COMPLETE, "COMPLETE")
    except BundleError:
        return False, modified
    checksums = complete.get("sha256") if isinstance(complete, dict) else None
    vouched = (
        isinstance(checksums, dict)
        and checksums.get(MANIFEST) == hashlib.sha256(data).hexdigest()
        and manifest.get("sys_id") == sys_id
        and manifest.get("kind") == kind
        and not manifest.get("errors")
    )
    return bool(vouched), modified


# Manifest fields that differ between two exports of the same data.
VOLATILE_MANIFEST_FIELDS = ("exported_at",)


def content_digest(entity: EntityBundle | str | os.PathLike) -> str:
    """A sha256 over an entity folder's content that ignores volatile fields (the manifest's exported_at,
    and COMPLETE, which checksums the manifest): equal for two exports of the same data."""
    digest = hashlib.sha256()
    prefix = entity._prefix if isinstance(entity, EntityBundle) else ""
    base = entity._root if isinstance(entity, EntityBundle) else open_root(entity)
    root = entity.path if isinstance(entity, EntityBundle) else base.path
    manifest = _load_json(base, prefix + MANIFEST, f"{root}: manifest.json")
    if isinstance(manifest, dict):
        for key in VOLATILE_MANIFEST_FIELDS:
            manifest.pop(key, None)
    digest.update(json.dumps(manifest, sort_keys=True, ensure_ascii=False).encode())
    files, _ = _list_files(base, prefix)
    for relpath in sorted(files - {MANIFEST, COMPLETE}):
        digest.update(f"\n{relpath}\0{_sha256(base.open(prefix + relpath))}".encode())
    digest.update(f"\ncomplete={COMPLETE in files}".encode())
    return digest.hexdigest()
