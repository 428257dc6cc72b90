"""pandas views of a bundle, for people exploring an export (every Parquet file also opens directly with
`pandas.read_parquet`). Data is checked as it is read: a damaged file raises BundleError, it is never
returned quietly. A bundle may be a URL (s3://, gs://, az://, file://); `storage_options` are fsspec's, as
pandas takes them (`{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}` for S3)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nmig.schema.format import (
    ATOM_TYPES,
    SERIES_SCHEMAS,
    SERIES_TYPE_KIND,
    BundleError,
    BundleWarning,
    decode_atom,
    decode_datetime,
    decode_float,
)
from nmig.schema.reader import Bundle, EntityBundle

PathLike = str | os.PathLike
Options = dict[str, Any] | None


def _entities(bundle_dir: PathLike, run_id: str | None, kind: str, storage_options: Options) -> list[EntityBundle]:
    bundle = Bundle(bundle_dir, storage_options)
    if run_id is not None:
        return [bundle.entity(kind, run_id)]
    return bundle.entities(kind)


def _usable(entity: EntityBundle) -> EntityBundle:
    if entity.problems:
        raise BundleError(f"{entity.kind} {entity.sys_id} cannot be read: {'; '.join(entity.problems)}")
    return entity


def _each_readable(bundle_dir: PathLike, run_id: str | None, kind: str, storage_options: Options) -> Iterator[EntityBundle]:
    """The entities to read. Asked for one, its damage raises; reading all, a damaged one is left out
    with a BundleWarning naming it and the others are still read."""
    for entity in _entities(bundle_dir, run_id, kind, storage_options):
        if run_id is not None or not entity.problems:
            yield _usable(entity)
        else:
            warnings.warn(f"left out: {'; '.join(entity.problems)}", BundleWarning, stacklevel=3)


def _decoded(attribute: dict[str, Any]) -> Any:
    type_ = attribute.get("type")
    if type_ in ATOM_TYPES:
        return decode_atom(str(type_), attribute.get("value"))
    if type_ == "stringSet":
        return list(attribute.get("values") or [])
    if type_ == "artifact":
        return attribute.get("hash")
    if type_ == "file":
        return (attribute.get("file") or {}).get("hash")
    return attribute.get("value")


def read_runs(bundle_dir: PathLike, kind: str = "run", storage_options: Options = None) -> pd.DataFrame:
    """One row per run (or model / model version): ids, state, counts, then one column per atom or
    string-set attribute path holding its value (NaN/±Inf exact, datetimes as UTC Timestamps)."""
    rows = []
    for entity in _entities(bundle_dir, None, kind, storage_options):
        manifest = entity.manifest
        row: dict[str, Any] = {
            "sys_id": entity.sys_id,
            "complete": entity.complete,
            "incomplete_reason": entity.incomplete_reason,
            "custom_run_id": manifest.get("custom_run_id"),
            "source_url": manifest.get("source_url"),
            "modification_time": _timestamp(manifest.get("modification_time")),
            "attributes": len(entity.attributes),
            "series_points": sum(
                a.get("points") or 0 for a in entity.attributes if a.get("type") in SERIES_TYPE_KIND
            ),
            "skipped": len(entity.skipped),
            "errors": len(entity.errors),
        }
        fixed = set(row)
        for attribute in entity.attributes:
            if attribute.get("type") in ATOM_TYPES or attribute.get("type") == "stringSet":
                column = str(attribute.get("path"))
                # An attribute named like a fixed column (a user may log run["complete"]) keeps its value.
                row[f"{column} (attribute)" if column in fixed else column] = _decoded(attribute)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["sys_id", "complete", "incomplete_reason", "custom_run_id", "source_url",
                                      "modification_time", "attributes", "series_points", "skipped", "errors"])
    return frame


def _timestamp(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(decode_datetime(value))
    except BundleError:
        return None


def read_attributes(bundle_dir: PathLike, run_id: str | None = None, kind: str = "run",
                    storage_options: Options = None) -> pd.DataFrame:
    """One row per attribute (and per skipped item): run_id, path, type, value, points, last_step,
    file_hash, file_size, name, ext, detail (fileSet entries / artifact files / raw values), skipped."""
    rows = []
    for entity in _each_readable(bundle_dir, run_id, kind, storage_options):
        for attribute in entity.attributes:
            type_ = attribute.get("type")
            info = attribute.get("file") if type_ == "file" else None
            detail: Any = None
            if type_ == "fileSet":
                detail = attribute.get("entries")
            elif type_ == "artifact":
                detail = attribute.get("files")
            rows.append(
                {
                    "run_id": entity.sys_id,
                    "path": attribute.get("path"),
                    "type": type_,
                    "value": _decoded(attribute),
                    "points": attribute.get("points"),
                    "last_step": decode_float(attribute.get("last_step")),
                    "file_hash": info.get("hash") if isinstance(info, dict) else None,
                    "file_size": info.get("size") if isinstance(info, dict) else None,
                    "name": info.get("name") if isinstance(info, dict) else None,
                    "ext": info.get("ext") if isinstance(info, dict) else None,
                    "detail": detail,
                    "skipped": None,
                }
            )
        for item in entity.skipped:
            rows.append({"run_id": entity.sys_id, "path": item.get("path"), "type": item.get("type"),
                         "skipped": item.get("reason")})
    columns = ["run_id", "path", "type", "value", "points", "last_step", "file_hash", "file_size", "name",
               "ext", "detail", "skipped"]
    return pd.DataFrame(rows, columns=columns)


def _read_series(bundle_dir: PathLike, series_kind: str, run_id: str | None, path: str | list[str] | None,
                 kind: str, storage_options: Options) -> pd.DataFrame:
    wanted = [path] if isinstance(path, str) else path
    tables = []
    for entity in _each_readable(bundle_dir, run_id, kind, storage_options):
        try:
            table = _read_table(entity, series_kind)
        except BundleError as exc:
            if run_id is not None:
                raise
            warnings.warn(f"left out: {exc}", BundleWarning, stacklevel=3)
            continue
        if table is None:
            continue
        table = table.set_column(0, "path", table.column("path").cast(pa.string()))
        if wanted is not None:
            table = table.filter(pc.is_in(table.column("path"), pa.array(wanted, pa.string())))
        tables.append(table.add_column(0, "run_id", pa.array([entity.sys_id] * table.num_rows, pa.string())))
    schema = SERIES_SCHEMAS[series_kind]
    empty = pa.schema([pa.field("run_id", pa.string()), pa.field("path", pa.string())]
                      + [f for f in schema if f.name != "path"])
    table = pa.concat_tables(tables) if tables else empty.empty_table()
    return table.to_pandas()


def _read_table(entity: EntityBundle, series_kind: str) -> pa.Table | None:
    parquet = entity.open_series(series_kind)
    if parquet is None:
        return None
    try:
        return parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise BundleError(f"{entity.kind} {entity.sys_id}: series_{series_kind}.parquet is damaged: {exc}") from None
    finally:
        parquet.close()


def read_float_series(bundle_dir: PathLike, run_id: str | None = None, path: str | list[str] | None = None,
                      kind: str = "run", storage_options: Options = None) -> pd.DataFrame:
    """Columns run_id, path, step, value, timestamp (UTC); rows grouped by run, then path, in step order."""
    return _read_series(bundle_dir, "float", run_id, path, kind, storage_options)


def read_string_series(bundle_dir: PathLike, run_id: str | None = None, path: str | list[str] | None = None,
                       kind: str = "run", storage_options: Options = None) -> pd.DataFrame:
    """Columns run_id, path, step, value, timestamp (UTC)."""
    return _read_series(bundle_dir, "string", run_id, path, kind, storage_options)


def read_file_series(bundle_dir: PathLike, run_id: str | None = None, path: str | list[str] | None = None,
                     kind: str = "run", storage_options: Options = None) -> pd.DataFrame:
    """Columns run_id, path, step, timestamp, name, description, file_hash, file_size, ext; the content of
    a point is `read_file(dir, run_id, path, step=...)`."""
    return _read_series(bundle_dir, "file", run_id, path, kind, storage_options)


def read_file(bundle_dir: PathLike, run_id: str, path: str, entry: str | None = None,
              step: float | None = None, kind: str = "run", storage_options: Options = None) -> bytes:
    """The original bytes of a File attribute, a FileSet entry (`entry=`), or a FileSeries point
    (`step=`), verified against its sha256 and size."""
    entity = _usable(Bundle(bundle_dir, storage_options).entity(kind, run_id))
    attribute = entity.attribute(path)
    where = f"{kind} {run_id}: {path}"
    if attribute is None:
        raise BundleError(f"{where}: no such attribute")
    type_ = attribute.get("type")
    if type_ == "file":
        info = attribute.get("file") or {}
        return entity.read_file(str(info.get("hash")), info.get("size"))
    if type_ == "fileSet":
        if entry is None:
            raise BundleError(f"{where} is a fileSet: name the entry (entry=...)")
        for item in attribute.get("entries") or []:
            if isinstance(item, dict) and item.get("entry") == entry:
                return entity.read_file(str(item.get("hash")), item.get("size"))
        raise BundleError(f"{where}: no entry {entry!r}")
    if SERIES_TYPE_KIND.get(str(type_)) == "file":
        if step is None:
            raise BundleError(f"{where} is a {type_}: name the point (step=...)")
        points = read_file_series(bundle_dir, run_id, path, kind, storage_options)
        match = points[points["step"] == float(step)]
        if match.empty:
            raise BundleError(f"{where}: no point at step {step}")
        row = match.iloc[0]
        return entity.read_file(str(row["file_hash"]), int(row["file_size"]))
    raise BundleError(f"{where} is a {type_}, not a file")
