"""Constants and value encodings of the bundle format, shared by the writer and the reader.

Everything here is pure: no I/O. The format is described for humans in docs/bundle-format.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import numbers
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nmig.errors import NmigError

FORMAT_NAME = "nmig-bundle"
FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1

# Folder of each entity kind inside the bundle.
KIND_FOLDERS: dict[str, str] = {"run": "runs", "model": "models", "model_version": "model_versions"}

EXPORT_INFO = "export.json"
EXPORT_LOG = "export.log"
MANIFEST = "manifest.json"
COMPLETE = "COMPLETE"
FILES_DIR = "files"
PARTIAL_DIR = ".partial"

ATOM_TYPES = frozenset({"float", "int", "bool", "string", "datetime"})
SERIES_KINDS = ("float", "string", "file")
# Series attribute type -> the parquet file (series kind) holding its points.
SERIES_TYPE_KIND: dict[str, str] = {
    "floatSeries": "float",
    "stringSeries": "string",
    "imageSeries": "file",
    "fileSeries": "file",
}
# ... the value series among them (points carry a value, not a file).
VALUE_SERIES_TYPE_KIND: dict[str, str] = {type_: kind for type_, kind in SERIES_TYPE_KIND.items() if kind != "file"}
RAW_TYPES = frozenset({"gitRef", "notebookRef", "experimentState"})

_UTC_MS = pa.timestamp("ms", tz="UTC")
# The path column is dictionary-encoded both in Arrow and in Parquet: a series repeats its path on every row.
_PATH = pa.dictionary(pa.int32(), pa.string())

SERIES_SCHEMAS: dict[str, pa.Schema] = {
    "float": pa.schema(
        [("path", _PATH), ("step", pa.float64()), ("value", pa.float64()), ("timestamp", _UTC_MS)]
    ),
    "string": pa.schema(
        [("path", _PATH), ("step", pa.float64()), ("value", pa.string()), ("timestamp", _UTC_MS)]
    ),
    "file": pa.schema(
        [
            ("path", _PATH),
            ("step", pa.float64()),
            ("timestamp", _UTC_MS),
            ("name", pa.string()),
            ("description", pa.string()),
            ("file_hash", pa.string()),
            ("file_size", pa.int64()),
            ("ext", pa.string()),
        ]
    ),
}


def series_file_name(kind: str) -> str:
    if kind not in SERIES_SCHEMAS:
        raise ValueError(f"unknown series kind {kind!r} (expected one of {', '.join(SERIES_KINDS)})")
    return f"series_{kind}.parquet"


SERIES_FILE_NAMES = frozenset(series_file_name(k) for k in SERIES_KINDS)


_NUMPY_OF_ARROW = {
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
    pa.float32(): np.float32, pa.float64(): np.float64,
    pa.timestamp("ms", tz="UTC"): np.int64, pa.timestamp("ms"): np.int64,  # milliseconds, as stored
}


def as_numpy(array: pa.Array) -> np.ndarray:
    """An Arrow array's values as a read-only numpy view, for a number (or millisecond timestamp, as int64) array
    without nulls, taken from its data buffer; anything else through pyarrow's to_numpy. Why: pyarrow's
    to_numpy imports pandas at its first call, 0.4 s of CPU in an import that has no other use for pandas."""
    dtype = _NUMPY_OF_ARROW.get(array.type)
    if dtype is None or not isinstance(array, pa.Array) or array.null_count:
        return array.to_numpy(zero_copy_only=False)
    width = np.dtype(dtype).itemsize
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width)


def path_runs(paths: pa.Array) -> Iterator[tuple[str, int, int]]:
    """(path, start, end) of each run of equal path in a series batch's path column (dictionary-encoded or
    not): rows are grouped by path in a bundle, and the writer regroups row groups the same way."""
    if not pa.types.is_dictionary(paths.type):
        paths = paths.dictionary_encode()
    codes = as_numpy(paths.indices)
    if len(codes) == 0:
        return
    names = paths.dictionary.to_pylist()
    cuts = (np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()
    for start, end in zip([0, *cuts], [*cuts, len(codes)], strict=True):
        yield names[int(codes[start])], start, end


class BundleError(NmigError):
    """The folder is not a bundle this nmig can read, or a part of it is damaged."""


class BundleWarning(UserWarning):
    """A damaged entity left out of a multi-entity read (the others are still returned)."""


_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def is_content_hash(value: object) -> bool:
    """True for a lowercase hex sha256: the only thing ever used to name a file inside files/."""
    return isinstance(value, str) and _HASH_RE.fullmatch(value) is not None


def file_relpath(content_hash: str) -> str:
    if not is_content_hash(content_hash):
        raise BundleError(f"invalid content hash {content_hash[:80]!r}")
    return f"{FILES_DIR}/{content_hash}.zst"


_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def safe_component(name: object) -> str:
    """Return `name` if it can be used as ONE folder name inside the bundle, else raise BundleError.

    Sys ids come from the server and are untrusted: no separators, no `.`/`..`, no control characters,
    nothing that a Windows machine reading the bundle later would choke on.
    """
    if not isinstance(name, str) or not name:
        raise BundleError(f"unsafe id {name!r}: empty or not a string")
    if len(name) > 200:
        raise BundleError(f"unsafe id {name[:40]!r}...: longer than 200 characters")
    if name in (".", "..") or name.startswith(".") or name.endswith((" ", ".")):
        raise BundleError(f"unsafe id {name!r}: not a plain folder name")
    if any(c in name for c in '/\\:*?"<>|') or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BundleError(f"unsafe id {name!r}: contains a path separator or reserved character")
    if _WINDOWS_RESERVED.match(name):
        raise BundleError(f"unsafe id {name!r}: reserved device name")
    return name


def check_format(doc: object, what: str, name: str = FORMAT_NAME) -> None:
    """Refuse a document that is not ours (format `name`) or is of a newer major version; accept newer minor
    versions."""
    if not isinstance(doc, dict) or doc.get("format") != name:
        raise BundleError(f"{what} is not an {name} document")
    version = doc.get("format_version")
    match = re.fullmatch(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
    if match is None:
        raise BundleError(f"{what} has an invalid format_version {version!r}")
    major = int(match.group(1))
    label = "bundle format" if name == FORMAT_NAME else f"{name} format"
    if major > SUPPORTED_MAJOR:
        raise BundleError(
            f"{what} uses {label} {version}, newer than this nmig supports "
            f"({SUPPORTED_MAJOR}.x); upgrade nmig to read it"
        )
    if major < SUPPORTED_MAJOR:
        raise BundleError(f"{what} uses {label} {version}, older than any this nmig reads")


# ---- exact values -------------------------------------------------------------------------------

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float | int | None) -> float | str | None:
    """A float as JSON can hold it exactly: finite floats as numbers, NaN/±Inf as the strings of the contract."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected a float, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        raise BundleError(f"invalid float value {value[:40]!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"invalid float value of type {type(value).__name__}")
    return float(value)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DATETIME_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$")


def encode_datetime(value: dt.datetime | int | str) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, truncated to milliseconds.

    Accepts an aware datetime, epoch milliseconds (what the legacy API sends), or an ISO string.
    A naive datetime is taken as UTC, never as local time: the legacy API speaks UTC only.
    """
    if isinstance(value, bool):
        raise TypeError("expected a datetime, got bool")
    if isinstance(value, int):
        moment = _EPOCH + dt.timedelta(milliseconds=value)
    elif isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, dt.datetime):
        moment = value
    else:
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    moment = moment.astimezone(dt.timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def decode_datetime(value: object) -> dt.datetime:
    """The aware UTC datetime of an encoded string (built field by field: never through local time)."""
    match = _DATETIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BundleError(f"invalid datetime value {str(value)[:40]!r}")
    year, month, day, hour, minute, second, millis = (int(g) for g in match.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise BundleError(f"invalid datetime value {value!r}: {exc}") from None


def encode_atom(type_: str, value: Any) -> Any:
    """The JSON form of an atom value of a legacy type; raises TypeError for a value of the wrong kind."""
    if value is None:
        return None
    if type_ == "float":
        return encode_float(value)
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"expected an int, got {type(value).__name__}")
        return int(value)
    if type_ == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"expected a bool, got {type(value).__name__}")
        return bool(value)
    if type_ == "string":
        if not isinstance(value, str):
            raise TypeError(f"expected a str, got {type(value).__name__}")
        return value
    if type_ == "datetime":
        return encode_datetime(value)
    raise ValueError(f"{type_!r} is not an atom type ({', '.join(sorted(ATOM_TYPES))})")


def decode_atom(type_: str, value: Any) -> Any:
    """The Python value of an atom as stored in a manifest; raises BundleError for a malformed one."""
    if value is None:
        return None
    if type_ == "float":
        return decode_float(value)
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise BundleError(f"invalid int value {str(value)[:40]!r}")
        return value
    if type_ == "bool":
        if not isinstance(value, bool):
            raise BundleError(f"invalid bool value {str(value)[:40]!r}")
        return value
    if type_ == "string":
        if not isinstance(value, str):
            raise BundleError(f"invalid string value of type {type(value).__name__}")
        return value
    if type_ == "datetime":
        return decode_datetime(value)
    raise BundleError(f"{type_!r} is not an atom type")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks: what COMPLETE records and what readers check."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
