"""The bulk of an import, decoded a whole request at a time: plain float points of one series.

Nearly every point of a migration arrives as `UpdateRunSnapshots` whose snapshots each hold a step, a
timestamp and one float appended to the same path (what `Run.log_metrics` builds for one metric, and what
nmig sends). Walking such a request message by message cost the emulator ~4 us a point in Python, and its
single ingest thread set the pace of every import (benchmarks/bench_latency.py: a run's last status waited
behind the points of every run before it). This reads those points from the request's protobuf encoding with
numpy instead.

Fidelity: the input is `update_batch.SerializeToString()` of the message protobuf itself parsed, so it is the
canonical encoding of exactly what was received (fields in number order, zero scalars left out, unknown
fields kept). The layout is checked in full, byte for byte, against the one shape below; anything else
(another field, a second path, a value of another kind, a length or varint out of the ranges here) gives
None and the request takes the per-message path, which handles every shape. Field numbers are those of
neptune-api's ingest protos (../shared/reference/neptune-api/proto/neptune_pb/ingest/v1/common.proto:
UpdateRunSnapshots.snapshots = 1; UpdateRunSnapshot.step = 1, timestamp = 2, append = 8; Step.whole = 1,
micro = 2; Value.float64 = 1) and google/protobuf/timestamp.proto (seconds = 1, nanos = 2):

    0A len  snapshot:  0A len Step{[08 whole] [10 micro]}
                       12 len Timestamp{[08 seconds] [10 nanos]}
                       42 len entry{0A len path  12 09  09 <8 bytes little-endian double>}

tests/neptune3_emulator/test_float_batch.py checks the decoding against protobuf on generated requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PAD = bytes(32)  # reads past the last record stay inside the array; what they read is checked away
_U64 = np.uint64
# Longest record length taken here: two length bytes (a path of up to 1,024 bytes needs them).
_MAX_LENGTH_BYTES = 2
# |seconds| below this keeps seconds * 1000 inside int64.
_MAX_ABS_SECONDS = 10**15


@dataclass(frozen=True)
class FloatPoints:
    """Points of one float series, in request order. Steps as Step's (whole, micro), times as epoch
    milliseconds rounded as the per-message path rounds them (ingest._ts_ms)."""

    path: str
    whole: np.ndarray  # int64, each in [0, 2**63)
    micro: np.ndarray  # int64, each in [0, 2**63)
    ts_ms: np.ndarray  # int64
    values: np.ndarray  # float64


def _record_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(body starts, body ends) of the repeated field 1 records, or None when the bytes are not only those."""
    starts: list[int] = []
    ends: list[int] = []
    append_start, append_end = starts.append, ends.append
    size = len(data)
    pos = 0
    while pos < size:
        if data[pos] != 0x0A or pos + 2 > size:
            return None
        length = data[pos + 1]
        if length < 0x80:
            body = pos + 2
        else:
            if pos + 3 > size or data[pos + 2] >= 0x80:
                return None
            length = (length & 0x7F) | (data[pos + 2] << 7)
            body = pos + 3
        pos = body + length
        append_start(body)
        append_end(pos)
    if pos != size:
        return None
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def _varints(buf: np.ndarray, at: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each varint starting at `at` where `where` (values as uint64, byte lengths; 0 and 0 elsewhere), or
    None if one runs over 10 bytes."""
    values = np.zeros(at.shape, dtype=_U64)
    lengths = np.zeros(at.shape, dtype=np.int64)
    going = where.copy()
    for k in range(10):
        if not going.any():
            return values, lengths
        byte = buf[np.where(going, at + k, 0)].astype(_U64)
        values |= np.where(going, (byte & _U64(0x7F)) << _U64(7 * k), _U64(0))
        ends_here = going & (byte < 0x80)
        lengths[ends_here] = k + 1
        going &= ~ends_here
    return None if going.any() else (values, lengths)


def _lengths(buf: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A length prefix of one or two bytes at each offset: (length, prefix bytes), or None."""
    first = buf[at].astype(np.int64)
    long = first >= 0x80
    if not long.any():
        return first, np.ones(at.shape, dtype=np.int64)
    second = buf[np.where(long, at + 1, 0)].astype(np.int64)
    if (long & (second >= 0x80)).any():
        return None
    return np.where(long, (first & 0x7F) | (second << 7), first), np.where(long, _MAX_LENGTH_BYTES, 1)


def _two_optional_varints(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A message of fields 1 and 2, both varints and optional, filling [start, end) exactly."""
    has_first = (start < end) & (buf[start] == 0x08)
    parsed = _varints(buf, start + 1, has_first)
    if parsed is None:
        return None
    first, first_len = parsed
    after = start + np.where(has_first, 1 + first_len, 0)
    has_second = (after < end) & (buf[after] == 0x10)
    parsed = _varints(buf, after + 1, has_second)
    if parsed is None:
        return None
    second, second_len = parsed
    if (after + np.where(has_second, 1 + second_len, 0) != end).any():
        return None
    return first, second


def _two_varint_field(
    buf: np.ndarray, at: np.ndarray, tag: int
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    """A field `tag` at each offset holding a two-varint message (Step, Timestamp: under 128 bytes, so one
    length byte): (its two values, the offsets right after it), or None."""
    if (buf[at] != tag).any() or (buf[at + 1] >= 0x80).any():
        return None
    end = at + 2 + buf[at + 1].astype(np.int64)
    values = _two_optional_varints(buf, at + 2, end)
    return None if values is None else (values, end)


def _varint_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the varint at `pos`, or None when it runs off the end or over 10 bytes."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    return None


def update_batch_bytes(operation: bytes) -> bytes | None:
    """The bytes of RunOperation.update_batch (field 8, ../shared/reference/neptune-api/proto/neptune_pb/ingest/
    v1/pub/ingest.proto:34) inside an encoded RunOperation, when the field is there exactly once: what protobuf
    parses that field from, so its points are the message's own. None when absent, repeated (protobuf would
    merge the copies) or when the top level does not scan as well-formed fields; the caller then encodes the
    parsed message instead. The top level holds a handful of fields, so this costs microseconds, where
    serialising the batch again costs about 0.1 us a point."""
    found: bytes | None = None
    pos, size = 0, len(operation)
    while pos < size:
        tag = _varint_at(operation, pos)
        if tag is None:
            return None
        key, pos = tag
        wire_type = key & 7
        if wire_type == 0:
            skipped = _varint_at(operation, pos)
            if skipped is None:
                return None
            pos = skipped[1]
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length = _varint_at(operation, pos)
            if length is None:
                return None
            start, pos = length[1], length[1] + length[0]
            if key >> 3 == 8:
                if found is not None:
                    return None
                found = operation[start:pos]
        else:
            return None  # groups (3, 4) and unknown wire types: not protobuf 3 a client sends
    return found if pos == size else None


def decode_float_points(snapshots: bytes) -> FloatPoints | None:
    """The points of `snapshots` (an UpdateRunSnapshots message, serialized by protobuf) when every snapshot is
    exactly a step, a timestamp and one float appended to one path shared by all; None otherwise."""
    bounds = _record_bounds(snapshots)
    if bounds is None or not len(bounds[0]):
        return None
    start, end = bounds
    buf = np.frombuffer(snapshots + _PAD, dtype=np.uint8)

    # 1: step, then 2: timestamp
    step_field = _two_varint_field(buf, start, 0x0A)
    if step_field is None:
        return None
    step, step_end = step_field
    stamp_field = _two_varint_field(buf, step_end, 0x12)
    if stamp_field is None:
        return None
    stamp, ts_end = stamp_field
    # 8: append, one map entry filling the rest of the snapshot
    if (buf[ts_end] != 0x42).any():
        return None
    entry_len = _lengths(buf, ts_end + 1)
    if entry_len is None:
        return None
    entry = ts_end + 1 + entry_len[1]
    if (entry + entry_len[0] != end).any() or (buf[entry] != 0x0A).any():
        return None
    key_len = _lengths(buf, entry + 1)
    if key_len is None:
        return None
    key_at = entry + 1 + key_len[1]
    width = int(key_len[0][0])
    if width == 0 or (key_len[0] != width).any():
        return None
    keys = buf[key_at[:, None] + np.arange(width)]
    if (keys != keys[0]).any():
        return None
    value_at = key_at + width
    if (buf[value_at] != 0x12).any() or (buf[value_at + 1] != 0x09).any() or (buf[value_at + 2] != 0x09).any():
        return None
    if (value_at + 11 != end).any():
        return None
    try:
        path = bytes(keys[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None
    values = buf[(value_at + 3)[:, None] + np.arange(8)].copy().view("<f8").reshape(-1)

    whole, micro = step
    if (whole >= _U64(2**63)).any() or (micro >= _U64(2**63)).any():
        return None
    seconds = stamp[0].view(np.int64)  # int64: two's complement
    nanos = stamp[1].view(np.int64)  # int32, sign-extended to 10 bytes when negative
    if (seconds >= _MAX_ABS_SECONDS).any() or (seconds <= -_MAX_ABS_SECONDS).any() or (nanos < -(2**31)).any() or (nanos >= 2**31).any():
        return None
    ts_ms = seconds * 1000 + (nanos + 500_000) // 1_000_000  # as ingest._ts_ms (floor division)
    return FloatPoints(path, whole.astype(np.int64), micro.astype(np.int64), ts_ms, values)
