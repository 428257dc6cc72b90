"""Writing a bundle: one entity (run, model, model version) at a time, streaming and crash-safe.

An entity is built in DIR/.partial/<random>/entity/ and renamed into place by `commit()`, so a killed process
leaves either the previous copy of the entity or nothing. On object storage (nmig.schema.store) it is built
in a local work folder and published object by object with COMPLETE last, so a killed process leaves the
previous copy or an entity without COMPLETE, which a resume exports again. Everything written is byte-deterministic for the
same input (whatever the page sizes and the order of calls across series paths), except the manifest's
`exported_at`; `nmig.schema.content_digest` compares entities ignoring it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import zstandard

from nmig import __version__
from nmig.schema.format import (
    ATOM_TYPES,
    COMPLETE,
    EXPORT_INFO,
    FILES_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    KIND_FOLDERS,
    MANIFEST,
    RAW_TYPES,
    SERIES_SCHEMAS,
    SERIES_TYPE_KIND,
    encode_atom,
    encode_datetime,
    encode_float,
    path_runs,
    safe_component,
    series_file_name,
    sha256_file,
)
from nmig.schema.store import BundleRoot, Location, open_root
from nmig.secrets import redact

# A file's content: bytes, a binary stream (read to EOF, never closed here) or a path on local disk.
FileSource = bytes | bytearray | memoryview | IO[bytes] | os.PathLike

# Rows per Parquet row group. Row groups are cut at fixed row counts, never at the caller's page
# boundaries, so the same series gives the same bytes however it was paged.
ROW_GROUP_ROWS = 262_144
# Series data buffered in memory before it is spilled to an Arrow IPC file in the work folder. Per entity:
# the exporter writes several entities at once, so this is multiplied by its worker count.
SPILL_BYTES = 16 * 1024 * 1024
# Files are fed to zstd in chunks of exactly this size, so the compressed bytes do not depend on how the
# source stream happened to split its reads.
FILE_CHUNK = 1024 * 1024
ZSTD_LEVEL = 3
_DICTIONARY_COLUMNS = ["path", "name", "ext", "file_hash"]


def dump_json(doc: Any) -> bytes:
    """The one canonical JSON serialisation of the format: sorted keys, UTF-8, no NaN literals."""
    # Compact: with an indent, json falls back to its slow pure-Python encoder.
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_export_info(
    bundle_dir: Location | BundleRoot, info: Mapping[str, Any], storage_options: dict[str, Any] | None = None
) -> None:
    """Write DIR/export.json atomically, filling in the format name, version and nmig version."""
    doc = dict(info)
    doc["format"] = FORMAT_NAME
    doc["format_version"] = FORMAT_VERSION
    doc.setdefault("nmig_version", __version__)
    open_root(bundle_dir, storage_options).write_bytes(EXPORT_INFO, dump_json(doc))


def clean_partial(
    bundle_dir: Location | BundleRoot, storage_options: dict[str, Any] | None = None,
    only: Callable[[str, str], bool] | None = None,
) -> None:
    """Remove work left in DIR/.partial by a killed process (on a store: this root's local work folder).
    Call it only when no writer is running, or, with `only(kind, sys_id)`, when no writer of an entity it
    accepts is running: then only those entities' work is removed from a local bundle's .partial (the shards
    of one export clean their own while the others write theirs; on a store each process has its own)."""
    root = open_root(bundle_dir, storage_options)
    if only is None or not root.is_local:
        root.clean_work()
        return
    partial = root.work_dir()
    try:
        names = [entry.name for entry in os.scandir(partial)]
    except OSError:
        return
    for name in names:
        owner = partial_owner(name)
        if owner is not None and only(*owner):
            target = partial / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


_PARTIAL_NAME = re.compile(r"(" + "|".join(re.escape(k) for k in sorted(KIND_FOLDERS, key=len, reverse=True)) + r")-(.+)-[0-9a-f]{12}(\.spill|\.old)?")


def partial_owner(name: str) -> tuple[str, str] | None:
    """(kind, sys_id) of an EntityWriter's work folder (`<kind>-<sys_id>-<12 hex>[.spill|.old]`), None for
    anything else (the export's download spool, a stranger)."""
    match = _PARTIAL_NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def _fixed_chunks(source: FileSource) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), FILE_CHUNK):
            yield bytes(view[start : start + FILE_CHUNK])
        return
    if isinstance(source, os.PathLike):
        with open(source, "rb") as fh:
            yield from _fixed_chunks(fh)
        return
    if not hasattr(source, "read"):
        raise TypeError(f"file content must be bytes, a binary stream or a path, not {type(source).__name__}")
    buf = bytearray()
    while True:
        piece = source.read(FILE_CHUNK - len(buf))
        if isinstance(piece, str):
            raise TypeError("file content stream must be binary, not text")
        if piece:
            buf += piece
        if len(buf) == FILE_CHUNK or (not piece and buf):
            yield bytes(buf)
            buf.clear()
        if not piece:
            return


class _HashingWriter(io.RawIOBase):
    """Passes writes to a file while hashing them (the sha256 of the stored .zst, for COMPLETE)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        return self._fh.write(data)


def _array(values: Any, type_: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    return pa.array(values, type=type_)


def _timestamps(values: Any) -> pa.Array:
    """Epoch milliseconds (ints) as timestamp[ms, UTC]: integer arithmetic only, never local time."""
    target = pa.timestamp("ms", tz="UTC")
    if isinstance(values, (pa.Array, pa.ChunkedArray)) and pa.types.is_timestamp(values.type):
        return _array(values, target)
    return _array(values, pa.int64()).cast(target)


class _SeriesSink:
    """The points of one series file, written grouped by path (paths in sorted order, each in the order its
    pages came), in row groups of ROW_GROUP_ROWS.

    While the points arrive in that order already (one series, or series one after another in path order, as
    the exporter sends them), row groups are written to the Parquet file as soon as they fill, so encoding
    overlaps fetching and nothing is buffered beyond one row group. The first point that breaks the order turns
    the sink into buffering: what was written is read back, and everything is kept in memory, spilled to an
    Arrow IPC file beyond SPILL_BYTES, and written in order at the end. Both ways give the same bytes: the file
    depends only on the rows in their final order, never on when or in what pieces they came.
    """

    def __init__(self, kind: str, spill_dir: Path, out: Path) -> None:
        self._spill_dir = spill_dir
        self.out = out
        self.kind = kind
        self.schema = SERIES_SCHEMAS[kind]
        self._data_schema = pa.schema([f for f in self.schema if f.name != "path"])
        self._spill_path = spill_dir / f"spill_{kind}.arrow"
        self._spill: ipc.RecordBatchFileWriter | None = None
        self._spilled = 0
        self._spill_closed = False
        self._chunks: dict[str, list[pa.RecordBatch | int]] = {}
        self._mem = 0
        # Streaming state: the last path that got points, the rows not yet in a row group, the open file.
        self._streaming = True
        self._last_path: str | None = None
        self._pending: list[tuple[str, pa.RecordBatch]] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self.points: dict[str, int] = {}
        self.last_step: dict[str, float | None] = {}

    def append(self, path: str, columns: Sequence[pa.Array]) -> None:
        batch = pa.RecordBatch.from_arrays(list(columns), schema=self._data_schema)
        self.points[path] = self.points.get(path, 0) + batch.num_rows
        self.last_step.setdefault(path, None)
        if batch.num_rows == 0:
            return  # a declared (maybe empty) series: no rows, no place in the order
        self.last_step[path] = batch.column(0)[batch.num_rows - 1].as_py()
        if self._streaming and self._last_path is not None and path < self._last_path:
            self._stop_streaming()
        if self._streaming:
            self._last_path = path
            self._pending.append((path, batch))
            self._pending_rows += batch.num_rows
            while self._pending_rows >= ROW_GROUP_ROWS:
                self._pending, self._pending_rows = self._emit(self._open(), self._pending, ROW_GROUP_ROWS)
        else:
            self._buffer(path, batch)

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                str(self.out),
                self.schema,
                compression="zstd",
                use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in self.schema.names],
                write_statistics=True,
            )
        return self._writer

    def _stop_streaming(self) -> None:
        """Points came out of path order: move what was written and what is pending into the buffer."""
        self._streaming = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            parquet = pq.ParquetFile(str(self.out))
            try:
                for index in range(parquet.num_row_groups):
                    group = parquet.read_row_group(index)
                    data = group.select(self._data_schema.names).cast(self._data_schema).combine_chunks()
                    batch = data.to_batches()[0]
                    for path, start, end in path_runs(group.column("path").combine_chunks()):
                        self._buffer(path, batch.slice(start, end - start))
            finally:
                parquet.close()
            self.out.unlink()
        for path, batch in self._pending:
            self._buffer(path, batch)
        self._pending, self._pending_rows = [], 0

    def _buffer(self, path: str, batch: pa.RecordBatch) -> None:
        self._chunks.setdefault(path, []).append(batch)
        self._mem += batch.nbytes
        if self._mem > SPILL_BYTES:
            self._spill_all()

    def _spill_all(self) -> None:
        if self._spill is None:
            self._spill_dir.mkdir(exist_ok=True)
            self._spill = ipc.new_file(str(self._spill_path), self._data_schema)
        for chunks in self._chunks.values():
            for i, chunk in enumerate(chunks):
                if isinstance(chunk, pa.RecordBatch):
                    self._spill.write_batch(chunk)
                    chunks[i] = self._spilled
                    self._spilled += 1
        self._mem = 0

    def close(self) -> None:
        """Close the spill file and an unfinished Parquet file (idempotent)."""
        if self._spill is not None and not self._spill_closed:
            self._spill_closed = True
            self._spill.close()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def write(self) -> bool:
        """Finish the Parquet file; False (and no file) when the series have no points at all."""
        if not any(self.points.values()):
            return False
        if self._streaming:
            writer = self._open()
            try:
                if self._pending_rows:
                    self._emit(writer, self._pending, self._pending_rows)
            finally:
                self._pending, self._pending_rows = [], 0
                self.close()
            return True
        reader = None
        spilled = None
        if self._spill is not None:
            self.close()
            # Read spilled batches into fresh buffers one at a time (no memory map: mapped pages would count
            # towards RSS until the whole file is done).
            spilled = pa.OSFile(str(self._spill_path))
            reader = ipc.open_file(spilled)
        writer = self._open()
        try:
            pending: list[tuple[str, pa.RecordBatch]] = []
            pending_rows = 0
            for path in sorted(self._chunks):
                for chunk in self._chunks[path]:
                    batch = chunk if isinstance(chunk, pa.RecordBatch) else reader.get_batch(chunk)  # type: ignore[union-attr]
                    pending.append((path, batch))
                    pending_rows += batch.num_rows
                    while pending_rows >= ROW_GROUP_ROWS:
                        pending, pending_rows = self._emit(writer, pending, ROW_GROUP_ROWS)
            if pending_rows:
                self._emit(writer, pending, pending_rows)
        finally:
            self.close()
            if spilled is not None:
                spilled.close()
        self._chunks.clear()
        return True

    def _emit(
        self, writer: pq.ParquetWriter, pending: list[tuple[str, pa.RecordBatch]], rows: int
    ) -> tuple[list[tuple[str, pa.RecordBatch]], int]:
        taken: list[tuple[str, pa.RecordBatch]] = []
        rest: list[tuple[str, pa.RecordBatch]] = []
        need = rows
        for path, batch in pending:
            if need <= 0:
                rest.append((path, batch))
            elif batch.num_rows <= need:
                taken.append((path, batch))
                need -= batch.num_rows
            else:
                taken.append((path, batch.slice(0, need)))
                rest.append((path, batch.slice(need)))
                need = 0
        paths: list[str] = []
        indices: list[pa.Array] = []
        for path, batch in taken:
            if not paths or paths[-1] != path:
                paths.append(path)
            indices.append(pa.repeat(pa.scalar(len(paths) - 1, pa.int32()), batch.num_rows))
        path_column = pa.DictionaryArray.from_arrays(pa.concat_arrays(indices), pa.array(paths, pa.string()))
        # One contiguous chunk per column: Parquet page boundaries then depend only on the data.
        data = pa.Table.from_batches([b for _, b in taken], schema=self._data_schema).combine_chunks()
        columns = [path_column] + [data.column(name).combine_chunks() for name in self._data_schema.names]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        writer.write_table(table, row_group_size=rows)
        return rest, sum(b.num_rows for _, b in rest)


class EntityWriter:
    """Writes one run/model/model version into the bundle; see the module docstring and the contract.

    Use as a context manager: a clean exit commits (if `commit()` or `abort()` was not called already),
    an exception aborts. Methods may be called from several threads.
    """

    def __init__(
        self,
        bundle_dir: Location | BundleRoot,
        kind: str,
        sys_id: str,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """`bundle_dir`: a folder, a URL (with fsspec's `storage_options`), or a BundleRoot (shared by the
        writers of one export, so that they share its work folder)."""
        if kind not in KIND_FOLDERS:
            raise ValueError(f"unknown entity kind {kind!r} (expected one of {', '.join(KIND_FOLDERS)})")
        self.root = open_root(bundle_dir, storage_options)
        self.bundle_dir = self.root.path
        self.kind = kind
        self.sys_id = safe_component(sys_id)
        self._relpath = f"{KIND_FOLDERS[kind]}/{self.sys_id}"
        self.target = self.root.join(self._relpath)  # a Path, or the entity's URL on a store
        # The entity is built in the work folder (.partial/<name> of a local bundle); spilled series and a
        # replaced older copy go to <name>.spill and <name>.old, so a local commit is a single rename.
        self._dir = self.root.work_dir() / f"{kind}-{self.sys_id}-{uuid.uuid4().hex[:12]}"
        self._spill_dir = self._dir.with_name(self._dir.name + ".spill")
        self._dir.mkdir(parents=True)
        self._lock = threading.RLock()
        self._info: dict[str, Any] = {"custom_run_id": None, "source_url": None, "modification_time": None}
        self._attributes: dict[str, dict[str, Any]] = {}
        self._skipped: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []
        self._sinks: dict[str, _SeriesSink] = {}
        self._series_types: dict[str, str] = {}
        self._stored: dict[str, str] = {}  # content hash -> sha256 of its .zst file
        self._state = "open"

    # ---- context manager -------------------------------------------------------------------------

    def __enter__(self) -> EntityWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    # ---- recording ---------------------------------------------------------------------------------

    @property
    def has_errors(self) -> bool:
        return bool(self._errors)

    def set_info(
        self,
        *,
        custom_run_id: str | None = None,
        source_url: str | None = None,
        modification_time: dt.datetime | int | str | None = None,
    ) -> None:
        with self._lock:
            self._check_open()
            self._info["custom_run_id"] = custom_run_id
            self._info["source_url"] = source_url
            self._info["modification_time"] = (
                None if modification_time is None else encode_datetime(modification_time)
            )

    def add_atom(self, path: str, type: str, value: Any) -> None:
        if type not in ATOM_TYPES:
            raise ValueError(f"{type!r} is not an atom type")
        self._add_attribute({"path": path, "type": type, "value": encode_atom(type, value)})

    def add_string_set(self, path: str, values: Iterable[str]) -> None:
        items = sorted(values)  # a set: sorted for deterministic bytes
        if not all(isinstance(v, str) for v in items):
            raise TypeError("stringSet values must be strings")
        self._add_attribute({"path": path, "type": "stringSet", "values": items})

    def add_raw(self, path: str, type: str, value: Any) -> None:
        """gitRef / notebookRef / experimentState: the raw properties as the API gives them (JSON-able)."""
        if type not in RAW_TYPES:
            raise ValueError(f"{type!r} is not a raw-valued type ({', '.join(sorted(RAW_TYPES))})")
        dump_json(value)  # refuse what cannot be stored exactly (NaN, non-JSON objects) here, not at commit
        self._add_attribute({"path": path, "type": type, "value": value})

    def add_artifact(self, path: str, hash: str, files: Iterable[Mapping[str, Any]]) -> None:
        entries = [dict(f) for f in files]
        dump_json(entries)
        self._add_attribute({"path": path, "type": "artifact", "hash": hash, "files": entries})

    def skip(self, path: str, type: str, reason: str) -> None:
        with self._lock:
            self._check_open()
            self._skipped.append({"path": path, "type": type, "reason": redact(str(reason))})

    def error(self, path: str | None, message: str) -> None:
        """Record a failure: the entity is then committed without COMPLETE (incomplete)."""
        with self._lock:
            self._check_open()
            self._errors.append({"path": path, "message": redact(str(message))})

    # ---- series ------------------------------------------------------------------------------------

    def declare_series(self, path: str, type: str) -> None:
        """Record a series attribute even if it gets no points (an empty series is still exported)."""
        kind = SERIES_TYPE_KIND.get(type)
        if kind is None:
            raise ValueError(f"{type!r} is not a series type ({', '.join(sorted(SERIES_TYPE_KIND))})")
        with self._lock:
            self._check_open()
            self._claim_series(path, type)
            self._sink(kind).append(path, [pa.array([], f.type) for f in self._sink(kind)._data_schema])

    def add_float_points(
        self, path: str, steps: Sequence[float] | Any, values: Sequence[float] | Any, timestamps_ms: Any
    ) -> None:
        """Append one page of a float series (pages of one path in step order; paths may interleave)."""
        columns = [_array(steps, pa.float64()), _array(values, pa.float64()), _timestamps(timestamps_ms)]
        self._append_points("floatSeries", path, columns)

    def add_string_points(
        self, path: str, steps: Sequence[float] | Any, values: Sequence[str | None] | Any, timestamps_ms: Any
    ) -> None:
        columns = [_array(steps, pa.float64()), _array(values, pa.string()), _timestamps(timestamps_ms)]
        self._append_points("stringSeries", path, columns)

    def add_file_series_point(
        self,
        path: str,
        step: float | None,
        timestamp_ms: int | None,
        name: str | None,
        description: str | None,
        content: FileSource,
        ext: str | None,
        type: str = "imageSeries",
    ) -> None:
        """One point of a FileSeries (`imageSeries` in the legacy API): its file is stored like any other.
        `step` None: the source did not say at which step the point was logged (a null step in the bundle)."""
        if SERIES_TYPE_KIND.get(type) != "file":
            raise ValueError(f"{type!r} is not a file series type")
        content_hash, size = self._store(content)
        columns = [
            pa.array([step], pa.float64()),
            _timestamps([timestamp_ms]),
            pa.array([name], pa.string()),
            pa.array([description], pa.string()),
            pa.array([content_hash], pa.string()),
            pa.array([size], pa.int64()),
            pa.array([ext], pa.string()),
        ]
        self._append_points(type, path, columns)

    def _append_points(self, type: str, path: str, columns: list[pa.Array]) -> None:
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"series {path!r}: steps, values and timestamps differ in length")
        with self._lock:
            self._check_open()
            self._claim_series(path, type)
            self._sink(SERIES_TYPE_KIND[type]).append(path, columns)

    def _claim_series(self, path: str, type: str) -> None:
        known = self._series_types.get(path)
        if known is None:
            if path in self._attributes:
                raise ValueError(f"attribute {path!r} recorded twice")
            self._series_types[path] = type
        elif known != type:
            raise ValueError(f"series {path!r} recorded as both {known} and {type}")

    def _sink(self, kind: str) -> _SeriesSink:
        if kind not in self._sinks:
            self._sinks[kind] = _SeriesSink(kind, self._spill_dir, self._dir / series_file_name(kind))
        return self._sinks[kind]

    # ---- files -------------------------------------------------------------------------------------

    def add_file(self, path: str, source: FileSource, name: str | None = None, ext: str | None = None) -> None:
        content_hash, size = self._store(source)
        self._add_attribute(
            {"path": path, "type": "file", "file": {"hash": content_hash, "size": size, "name": name, "ext": ext}}
        )

    def add_fileset(self, path: str, entries: Iterable[tuple[str, FileSource]]) -> None:
        """Entry names are data (relative paths as the server gave them); they never become file names."""
        stored = []
        for entry, source in entries:
            if not isinstance(entry, str):
                raise TypeError("fileSet entry names must be strings")
            content_hash, size = self._store(source)
            stored.append({"entry": entry, "hash": content_hash, "size": size})
        stored.sort(key=lambda e: (e["entry"], e["hash"]))
        self._add_attribute({"path": path, "type": "fileSet", "entries": stored})

    def _store(self, source: FileSource) -> tuple[str, int]:
        """Stream content through sha256 + zstd into files/<sha256>.zst; returns (hash, original size)."""
        with self._lock:
            self._check_open()
            files = self._dir / FILES_DIR
            files.mkdir(exist_ok=True)
        tmp = files / f".{uuid.uuid4().hex}.tmp"
        content = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as raw:
                out = _HashingWriter(raw)
                compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
                with compressor.stream_writer(out, closefd=False) as zw:
                    for chunk in _fixed_chunks(source):
                        content.update(chunk)
                        size += len(chunk)
                        zw.write(chunk)
            content_hash = content.hexdigest()
            with self._lock:
                if content_hash in self._stored:
                    tmp.unlink()  # same content already stored in this entity: dedupe
                else:
                    os.replace(tmp, files / f"{content_hash}.zst")
                    self._stored[content_hash] = out.sha256.hexdigest()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return content_hash, size

    # ---- attributes ----------------------------------------------------------------------------------

    def _add_attribute(self, attribute: dict[str, Any]) -> None:
        path = attribute["path"]
        if not isinstance(path, str) or not path:
            raise ValueError(f"attribute path must be a non-empty string, got {path!r}")
        with self._lock:
            self._check_open()
            if path in self._attributes or path in self._series_types:
                raise ValueError(f"attribute {path!r} recorded twice")
            self._attributes[path] = attribute

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"entity writer for {self.kind} {self.sys_id} is already {self._state}")

    # ---- commit / abort ------------------------------------------------------------------------------

    def commit(self) -> Path | str:
        """Finish the entity and rename it into place (replacing an older copy); returns its folder.

        With errors recorded, the folder is committed without COMPLETE: the bundle shows it as incomplete
        and the manifest says why.
        """
        with self._lock:
            self._check_open()
            try:
                attributes = dict(self._attributes)
                for kind, sink in self._sinks.items():
                    sink.write()
                    for path, points in sink.points.items():
                        attributes[path] = {
                            "path": path,
                            "type": self._series_types[path],
                            "points": points,
                        }
                        if kind != "file":
                            attributes[path]["last_step"] = encode_float(sink.last_step[path])
                manifest = {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "kind": self.kind,
                    "sys_id": self.sys_id,
                    **self._info,
                    "exported_at": encode_datetime(dt.datetime.now(dt.timezone.utc)),
                    "attributes": [attributes[p] for p in sorted(attributes)],
                    "skipped": sorted(self._skipped, key=lambda s: (s["path"], s["type"], s["reason"])),
                    "errors": sorted(self._errors, key=lambda e: (e["path"] or "", e["message"])),
                }
                manifest_bytes = dump_json(manifest)
                (self._dir / MANIFEST).write_bytes(manifest_bytes)
                if not self._errors:
                    checksums = {MANIFEST: hashlib.sha256(manifest_bytes).hexdigest()}
                    for kind in self._sinks:
                        name = series_file_name(kind)
                        if (self._dir / name).exists():
                            checksums[name] = sha256_file(self._dir / name)
                    for content_hash, digest in self._stored.items():
                        checksums[f"{FILES_DIR}/{content_hash}.zst"] = digest
                    (self._dir / COMPLETE).write_bytes(dump_json({"sha256": checksums}))
                self._move_into_place()
            except BaseException:
                self._state = "aborted"
                self._remove_work()
                raise
            self._state = "committed"
            return self.target

    def _move_into_place(self) -> None:
        self.root.publish(self._dir, self._relpath)
        if self._spill_dir.exists():
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    def _remove_work(self) -> None:
        for sink in self._sinks.values():
            sink.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        shutil.rmtree(self._spill_dir, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written for this entity; an older copy in the bundle stays as it was."""
        with self._lock:
            if self._state == "open":
                self._state = "aborted"
            if self._state != "committed":
                self._remove_work()


