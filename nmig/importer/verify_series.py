"""`nmig verify`, series part: the points a bundle run should have in 3.x against what neptune-query returns.

What is expected is not a second copy of the import rules: the bundle's points go through the importer's own
plan (`RunPlan.series_target`, which 3.x path) and `limits.SeriesFilter` (which points are sent, with which
timestamps), exactly as `nmig import` sends them. Points are compared on the micro-step 3.x keeps.

Memory is bounded: the bundle is streamed batch by batch and the target read window by window
(`step_range`), at most WINDOW_POINTS expected points at a time, whatever the series length.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nmig.importer.limits import step_micros, step_of_micros
from nmig.importer.plan import RunPlan
from nmig.importer.points import PlannedPoints  # the replay's own walk over the planned points
from nmig.schema import EntityBundle

WINDOW_POINTS = 100_000  # expected points per target read (and per comparison)
EXAMPLES_PER_CASE = 3  # differences shown per series and case; all are counted
_NEPTUNE_TYPE = {"float": "float_series", "string": "string_series", "file": "file_series"}


@dataclass
class Difference:
    run: str  # legacy sys/id
    path: str  # 3.x path
    what: str  # short machine-readable case
    expected: Any
    found: Any
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "path": self.path, "what": self.what, "expected": shown_value(self.expected),
                "found": shown_value(self.found), "detail": self.detail}


def shown_value(value: Any) -> Any:
    """A JSON-safe, short rendering of a value for tables and reports."""
    if hasattr(value, "isoformat") and hasattr(value, "year"):  # datetime, pandas Timestamp
        return shown_value(value.isoformat())
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) or len(value) <= 200 else value[:197] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [shown_value(v) for v in sorted(value, key=str)][:50]
    return shown_value(str(value))


@dataclass
class SeriesTally:
    """What was checked for one run, and what was found there."""

    series: int = 0
    expected_points: int = 0
    found_points: int = 0
    found_files: int = 0
    found_bytes: int = 0
    expected_files: int = 0
    expected_bytes: int = 0
    differences: list[Difference] = field(default_factory=list)

    def merge(self, other: SeriesTally) -> None:
        for name in ("series", "expected_points", "found_points", "found_files", "found_bytes", "expected_files", "expected_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.differences.extend(other.differences)


@dataclass
class _Expected:
    """Expected points of one series in one step window (arrays aligned by position)."""

    micros: np.ndarray
    stamps: np.ndarray
    values: list[Any]  # float | str values; for file series the (hash, size) pairs

    def __len__(self) -> int:
        return len(self.micros)


class TargetSeriesReader:
    """Reads series of one run through neptune-query (the caller has set the API token)."""

    def __init__(self, project: str, run_id: str) -> None:
        self.project = project
        self.run_id = run_id

    def fetch(self, kind: str, paths: list[str], lo: float | None, hi: float | None) -> dict[str, tuple[np.ndarray, np.ndarray, list[Any]]]:
        """{path: (micro-steps, timestamps in ms, values)} of the points in [lo, hi] (None: open end)."""
        from neptune_query import runs as nq_runs

        fetch = nq_runs.fetch_metrics if kind == "float" else nq_runs.fetch_series
        frame = fetch(
            project=self.project, runs=[self.run_id], attributes=paths, include_time="absolute",
            step_range=(lo, hi), lineage_to_the_root=False,
        )
        out: dict[str, tuple[np.ndarray, np.ndarray, list[Any]]] = {}
        if frame is None or len(frame) == 0:
            return out
        steps = frame.index.get_level_values("step").to_numpy(dtype=np.float64)
        for path in paths:
            if (path, "absolute_time") not in frame.columns:
                continue
            times = frame[(path, "absolute_time")]
            # A wide table has a row for every step of any series asked for: a point of this series is a row
            # with a time (a NaN value alone cannot tell a NaN point from no point).
            present = times.notna().to_numpy()
            stamps_us = times[present].astype("datetime64[us, UTC]").astype("int64").to_numpy()
            values = frame[(path, "value")].to_numpy()[present]
            # the same exact step arithmetic as the import (limits.step_micros), so a shifted step shows as one
            out[path] = (step_micros(steps[present]), stamps_us // 1000, list(values))
        return out


def sample_positions(points: int, sample: int) -> set[int]:
    """`sample` positions among `points`, evenly spread and always with the first and the last (deterministic)."""
    if points <= sample:
        return set(range(points))
    if sample == 1:
        return {points - 1}
    return {round(k * (points - 1) / (sample - 1)) for k in range(sample)}


def _expected_windows(
    entity: EntityBundle, plan: RunPlan, kind: str, sample: int | None
) -> Iterator[tuple[str, bool, _Expected]]:
    """(3.x path, last window of that series?, expected points) windows, streaming the bundle once."""
    current: str | None = None
    buffer: list[_Expected] = []
    buffered = 0
    wanted: np.ndarray = np.zeros(0, np.int64)

    def flush(last: bool) -> Iterator[tuple[str, bool, _Expected]]:
        nonlocal buffer, buffered
        assert current is not None
        merged = _Expected(
            np.concatenate([b.micros for b in buffer]) if buffer else np.zeros(0, np.int64),
            np.concatenate([b.stamps for b in buffer]) if buffer else np.zeros(0, np.int64),
            [v for b in buffer for v in b.values],
        )
        buffer, buffered = [], 0
        yield current, last, merged

    columns = ["file_hash", "file_size"] if kind == "file" else ["value"]
    for chunk in PlannedPoints(entity, plan, kind, columns):
        item = chunk.item
        if item.target != current:
            if current is not None:
                yield from flush(True)
            current = item.target
            wanted = np.array(sorted(sample_positions(item.points, sample)), np.int64) if sample else wanted
        keep = chunk.keep
        if sample:
            keep = keep & np.isin(np.arange(chunk.start, chunk.start + len(chunk)), wanted)
        index = np.flatnonzero(keep)
        if kind == "file":
            hashes = chunk.column("file_hash").to_pylist()
            sizes = chunk.column("file_size").to_pylist()
            values: list[Any] = [(hashes[i], sizes[i]) for i in index.tolist()]
        elif kind == "float":
            values = chunk.column("value").to_numpy(zero_copy_only=False)[index].tolist()
        else:
            values = chunk.strings(index)
        buffer.append(_Expected(chunk.micros[index], chunk.stamps[index], values))
        buffered += len(index)
        if buffered >= WINDOW_POINTS:
            yield from flush(False)
    if current is not None:
        yield from flush(True)


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


class SeriesChecker:
    """Compares every planned series of one run (one kind at a time) with the target."""

    def __init__(
        self,
        entity: EntityBundle,
        plan: RunPlan,
        reader: TargetSeriesReader,
        found_types: dict[str, str],
        sample: int | None,
        on_points: Callable[[int], None],
        digests: Callable[[list[Any]], dict[Any, str]],
    ) -> None:
        self.entity = entity
        self.plan = plan
        self.reader = reader
        self.found_types = found_types  # 3.x path -> neptune-query type, from the run's table
        self.sample = sample
        self.on_points = on_points
        self.digests = digests
        self.tally = SeriesTally()

    def _diff(self, path: str, what: str, expected: Any, found: Any, detail: str = "") -> None:
        self.tally.differences.append(Difference(self.plan.sys_id, path, what, expected, found, detail))

    def check(self) -> SeriesTally:
        """Each kind's reads are a chain of their own (under 429s and 5xx mostly the client's waits): the kinds
        are read at once, each into its own tally, merged in a fixed order (float, string, file) so the
        differences come out as they would one kind after another."""
        import copy
        from concurrent.futures import ThreadPoolExecutor

        kinds = [(kind, {s.target for s in self.plan.series if s.kind == kind}) for kind in ("float", "string", "file")]
        parts = []
        for kind, targets in kinds:
            if targets:
                part = copy.copy(self)
                part.tally = SeriesTally()
                parts.append((part, kind, targets))
        if len(parts) == 1:
            parts[0][0]._check_kind(parts[0][1], parts[0][2])
        elif parts:
            with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="nmig-verify-series") as pool:
                futures = [pool.submit(part._check_kind, kind, targets) for part, kind, targets in parts]
                for future in futures:
                    future.result()
        for part, _, _ in parts:
            self.tally.merge(part.tally)
        return self.tally

    def _check_kind(self, kind: str, targets: set[str]) -> None:
        wanted_type = _NEPTUNE_TYPE[kind]
        absent: dict[str, int] = {}  # series not readable in the target -> expected points so far
        for target in sorted(targets):
            found_type = self.found_types.get(target)
            if found_type is None:
                absent[target] = 0
            elif found_type != wanted_type:
                self._diff(target, "wrong_type", wanted_type, found_type)
                absent[target] = -1  # reported already
        self.tally.series += len(targets)
        lo_by_path: dict[str, float | None] = {}
        pending: dict[int, dict[str, _Expected]] = {}  # sampled mode: micro-step -> path -> its one point
        # Whole short series are read together, one request for several (their points add up to at most a
        # window): a run of many small series costs a few reads, not one per series.
        group: dict[str, _Expected] = {}
        grouped = 0

        def read_group() -> None:
            nonlocal grouped
            if group:
                found_all = self.reader.fetch(kind, sorted(group), None, None)
                for member, want in group.items():
                    self._compare(kind, member, want, found_all.get(member))
                    self.on_points(len(want))
            group.clear()
            grouped = 0

        for path, last, expected in _expected_windows(self.entity, self.plan, kind, self.sample):
            self.tally.expected_points += len(expected)
            if kind == "file":
                self.tally.expected_files += len(expected)
                self.tally.expected_bytes += sum(int(size or 0) for _, size in expected.values)
            if path in absent:
                self.on_points(len(expected))
                if absent[path] >= 0:
                    absent[path] += len(expected)
                    # a series whose every point the limits drop is not created by the import either
                    if last and absent[path] > 0:
                        self._diff(path, "missing_series", f"{absent[path]} point(s)", None, "the series is not in the target run")
                continue
            if self.sample:
                for i, micro in enumerate(expected.micros.tolist()):
                    one = _Expected(expected.micros[i : i + 1], expected.stamps[i : i + 1], expected.values[i : i + 1])
                    pending.setdefault(int(micro), {})[path] = one
                continue
            if last and path not in lo_by_path:
                if grouped + len(expected) > WINDOW_POINTS:
                    read_group()
                group[path] = expected
                grouped += len(expected)
                continue
            lo = lo_by_path.get(path)
            hi = None if last else step_of_micros(int(expected.micros[-1]))
            found = self.reader.fetch(kind, [path], lo, hi).get(path)
            self._compare(kind, path, expected, found)
            if not last:
                # the next window starts one micro-step above this one's last expected point, so a point the
                # target holds between two windows is still read (and reported as unexpected)
                lo_by_path[path] = step_of_micros(int(expected.micros[-1]) + 1)
            self.on_points(len(expected))
        read_group()
        for micro, by_path in sorted(pending.items()):
            step = step_of_micros(micro)
            found_all = self.reader.fetch(kind, sorted(by_path), step, step)
            for path, expected in by_path.items():
                self._compare(kind, path, expected, found_all.get(path))
                self.on_points(1)

    def _compare(self, kind: str, path: str, expected: _Expected, found: tuple[np.ndarray, np.ndarray, list[Any]] | None) -> None:
        f_micros, f_stamps, f_values = found if found is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64), [])
        self.tally.found_points += len(f_micros)
        common, e_idx, f_idx = np.intersect1d(expected.micros, f_micros, assume_unique=True, return_indices=True)
        missing = np.setdiff1d(expected.micros, common, assume_unique=True)
        extra = np.setdiff1d(f_micros, common, assume_unique=True)
        if len(missing):
            shown = ", ".join(f"{_step_text(m)}" for m in missing[:EXAMPLES_PER_CASE].tolist())
            self._diff(path, "missing_points", f"{len(missing)} more point(s)", None, f"at step(s) {shown}" + (" ..." if len(missing) > EXAMPLES_PER_CASE else ""))
        if len(extra):
            shown = ", ".join(f"{_step_text(m)}" for m in extra[:EXAMPLES_PER_CASE].tolist())
            self._diff(path, "unexpected_points", None, f"{len(extra)} point(s)", f"at step(s) {shown}" + (" ..." if len(extra) > EXAMPLES_PER_CASE else ""))
        shifted = np.flatnonzero(expected.stamps[e_idx] != f_stamps[f_idx])
        if len(shifted):
            first = shifted[0]
            self._diff(
                path, "timestamp_differs", _ms_text(int(expected.stamps[e_idx[first]])), _ms_text(int(f_stamps[f_idx[first]])),
                f"{len(shifted)} point(s); first at step {_step_text(int(common[first]))}",
            )
        if kind == "file":
            self._compare_files(path, [(int(c), expected.values[e], f_values[f]) for c, e, f in zip(common.tolist(), e_idx.tolist(), f_idx.tolist(), strict=True)])
            self.tally.found_files += len(f_values)
            self.tally.found_bytes += sum(int(getattr(v, "size_bytes", 0) or 0) for v in f_values)
            return
        bad = [
            (int(c), expected.values[e], f_values[f])
            for c, e, f in zip(common.tolist(), e_idx.tolist(), f_idx.tolist(), strict=True)
            if not (_same_float(float(expected.values[e]), float(f_values[f])) if kind == "float" else expected.values[e] == f_values[f])
        ]
        if bad:
            micro, want, got = bad[0]
            self._diff(path, "value_differs", want, got, f"{len(bad)} point(s); first at step {_step_text(micro)}")

    def _compare_files(self, path: str, pairs: list[tuple[int, tuple[str, int], Any]]) -> None:
        if not pairs:
            return
        digests = self.digests([found for _, _, found in pairs])
        for micro, (want_hash, want_size), found in pairs:
            size = getattr(found, "size_bytes", None)
            if want_size is not None and size != want_size:
                self._diff(path, "file_size_differs", want_size, size, f"file series point at step {_step_text(micro)}")
                continue
            digest = digests.get(found)
            if digest is None:
                self._diff(path, "file_not_downloadable", want_hash, None, f"file series point at step {_step_text(micro)}")
            elif digest != want_hash:
                self._diff(path, "file_hash_differs", want_hash, digest, f"file series point at step {_step_text(micro)}")


def _step_text(micros: int) -> str:
    """A step as its shortest exact decimal (1e12 - 1 is shown whole, not as 1e+12)."""
    return repr(step_of_micros(micros))


def _ms_text(ms: int) -> str:
    import datetime as dt

    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


DOWNLOAD_CHUNK_BYTES = 256 * 1024 * 1024  # downloaded (then hashed and deleted) at a time; a bigger file alone


def file_digests(files: list[Any]) -> dict[Any, str]:
    """SHA-256 of each of `files` (neptune-query File objects), downloaded through neptune-query a chunk at a
    time into a temporary folder that is removed as soon as the chunk is hashed (disk use stays bounded).
    A file missing from the answer could not be downloaded."""
    digests: dict[Any, str] = {}
    chunk: list[Any] = []
    size = 0
    for file in files:
        if chunk and size + int(file.size_bytes or 0) > DOWNLOAD_CHUNK_BYTES:
            digests.update(_digest_chunk(chunk))
            chunk, size = [], 0
        chunk.append(file)
        size += int(file.size_bytes or 0)
    if chunk:
        digests.update(_digest_chunk(chunk))
    return digests


def _digest_chunk(files: list[Any]) -> dict[Any, str]:
    """neptune-query names downloads after the run, attribute and step with unusual characters replaced, so two
    attributes can land on the same name: such files are fetched again one by one, each into its own folder."""
    folder = Path(tempfile.mkdtemp(prefix="nmig-verify-"))
    try:
        # all at once first; when that keeps failing, file by file below, so one bad file does not take the others
        frame = _download_with_retries(list(files), folder / "all", attempts=2)
        by_key: dict[tuple[str, float | None], str] = {}
        for (_, step), row in frame.iterrows() if frame is not None else ():
            for attribute, local in row.items():
                if isinstance(local, str):
                    by_key[(str(attribute), None if step is None or (isinstance(step, float) and math.isnan(step)) else float(step))] = local
        counts: dict[str, int] = {}
        for local in by_key.values():
            counts[local] = counts.get(local, 0) + 1
        digests: dict[Any, str] = {}
        for index, file in enumerate(files):
            local = by_key.get((file.attribute_path, None if file.step is None else float(file.step)))
            if local is None or counts.get(local, 0) > 1:
                single = _download_with_retries([file], folder / f"one-{index}")
                paths = [v for v in single.to_numpy().ravel().tolist() if isinstance(v, str)] if single is not None else []
                local = paths[0] if paths else None
            if local is not None:
                digests[file] = sha256_of(Path(local))
        return digests
    finally:
        shutil.rmtree(folder, ignore_errors=True)


DOWNLOAD_ATTEMPTS = 4


def _download_with_retries(files: list[Any], destination: Path, attempts: int = DOWNLOAD_ATTEMPTS) -> Any:
    """neptune-query's download_files, tried again when it gives up (it retries a failing storage request only
    three times); None when it still fails, so the files are reported instead of stopping the verify."""
    import time

    from neptune_query import runs as nq_runs

    for attempt in range(attempts):
        try:
            return nq_runs.download_files(files=files, destination=destination)
        except Exception:  # neptune-query raises its own kinds for each storage failure
            if attempt + 1 < attempts:
                time.sleep(0.5 * 2**attempt)
    return None


__all__ = [
    "Difference",
    "SeriesChecker",
    "SeriesTally",
    "TargetSeriesReader",
    "file_digests",
    "sample_positions",
    "sha256_of",
]
