"""The one walk over a run's planned series points, shared by the dry run, the replay and verify.

`PlannedPoints(entity, plan, kind)` streams one kind of series of one run from the bundle and yields, per
planned series and batch, a `PointChunk`: the rows of that series in the batch with every point's micro-step
and (adjusted) timestamp and the mask of the points the import sends, as `limits.SeriesFilter` decides (3.x
limits, and the resume point of an interrupted run). Columns are read by name. Series the plan does not
write (empty, colliding path) are skipped: the plan's events say why. After the walk, `adjustments()` and
`last_micros()` say what the filters changed and where each series ends in 3.x.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from nmig.importer.limits import SeriesFilter
from nmig.importer.plan import RunPlan, SeriesItem
from nmig.schema import EntityBundle, path_runs
from nmig.schema.format import as_numpy

BATCH_ROWS = 65_536


def timestamps_ms(column: pa.Array) -> np.ndarray:
    """A bundle timestamp column as int64 milliseconds since the epoch."""
    if column.type.equals(_UTC_MS):
        return as_numpy(column)  # the stored int64 milliseconds themselves
    return as_numpy(column.cast(pa.int64()))


_UTC_MS = pa.timestamp("ms", tz="UTC")


@dataclass
class PointChunk:
    """Consecutive rows of one planned series within one batch."""

    item: SeriesItem
    series_filter: SeriesFilter
    start: int  # rows of this series streamed before this chunk (its first row's position in the series)
    steps: np.ndarray  # the legacy steps (float64), every row
    micros: np.ndarray  # the micro-steps 3.x keeps, every row
    stamps: np.ndarray  # timestamps in ms as sent (never decreasing), every row
    keep: np.ndarray  # the rows the import sends
    _columns: Mapping[str, pa.Array]
    planned: np.ndarray | None = None  # the rows the 3.x rules keep, resume or not (held or sent)

    def __len__(self) -> int:
        return len(self.steps)

    def column(self, name: str) -> pa.Array:
        """Another column of the chunk's rows, by name (one the stream was asked for)."""
        return self._columns[name]

    def strings(self, index: np.ndarray) -> list[str]:
        """The string values at `index` as 3.x gets them: a missing value is empty, a value over 1 MiB is cut
        (and counted in the series' adjustments)."""
        raw = self.column("value").to_pylist()
        return self.series_filter.fit_values([raw[i] if raw[i] is not None else "" for i in index.tolist()], self.steps[index])


class PlannedPoints:
    """The planned points of one kind of series of one run, streamed from the bundle once (BundleError when
    the bundle's series file is damaged). `columns`: what else to read besides path, step and timestamp;
    `resume_after`: {3.x path: last micro-step the target holds}, for a resumed run."""

    def __init__(
        self,
        entity: EntityBundle,
        plan: RunPlan,
        kind: str,
        columns: Sequence[str] = (),
        resume_after: Mapping[str, int] | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.entity = entity
        self.plan = plan
        self.kind = kind
        self.columns = ["path", "step", "timestamp", *columns]
        self.resume_after = resume_after or {}
        self.batch_rows = batch_rows
        self.filters: dict[str, SeriesFilter] = {}  # legacy path -> its filter, for the series streamed so far
        self._rows: dict[str, int] = {}

    def __iter__(self) -> Iterator[PointChunk]:
        for batch in self.entity.iter_series(self.kind, batch_rows=self.batch_rows, columns=self.columns):
            by_name: dict[str, Any] = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
            for legacy_path, start, end in path_runs(by_name["path"]):
                item = self.plan.series_target(self.kind, legacy_path)
                if item is None:
                    continue
                series_filter = self.filters.get(legacy_path)
                if series_filter is None:
                    series_filter = self.filters[legacy_path] = SeriesFilter(resume_after_micros=self.resume_after.get(item.target))
                length = end - start
                steps = as_numpy(by_name["step"].slice(start, length))
                keep, micros, stamps = series_filter.apply(steps, timestamps_ms(by_name["timestamp"].slice(start, length)))
                seen = self._rows.get(legacy_path, 0)
                self._rows[legacy_path] = seen + length
                columns = {name: column.slice(start, length) for name, column in by_name.items() if name not in ("path", "step", "timestamp")}
                yield PointChunk(item, series_filter, seen, steps, micros, stamps, keep, columns, series_filter.planned)

    def adjustments(self) -> Iterator[tuple[str, str, str]]:
        """(legacy path, report case, what was done) for every series streamed, in bundle order."""
        for legacy_path, series_filter in self.filters.items():
            for case, detail in series_filter.adjustments.events():
                yield legacy_path, case, detail

    def last_micros(self) -> dict[str, int]:
        """{3.x path: the last micro-step it holds once everything kept is sent} of the series streamed."""
        out = {}
        for legacy_path, series_filter in self.filters.items():
            item = self.plan.series_target(self.kind, legacy_path)
            if item is not None and series_filter.last_micros is not None:
                out[item.target] = series_filter.last_micros
        return out
