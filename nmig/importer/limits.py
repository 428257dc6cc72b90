"""3.x limits, checked before anything is sent. Pure functions and one small stateful series filter.

Every rule says what is kept and what is changed; callers put each case in the import report, so nothing is
lost silently. The limits are those the pinned neptune-scale client enforces (sync/parameters.py,
api/validation.py) and the service reports (IngestCode SERIES_STEP_NON_INCREASING and friends).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

MAX_ATTRIBUTE_PATH_BYTES = 1024  # neptune-scale drops longer paths client-side (metadata_splitter._validate_paths)
MAX_STRING_SERIES_VALUE_BYTES = 1024 * 1024  # neptune-scale drops longer string-series values client-side
MAX_RUN_ID_BYTES = 730  # neptune-scale's MAX_RUN_ID_LENGTH; run ids may not contain "/" either
MAX_EXPERIMENT_NAME_BYTES = 730
MAX_STEP = 1_000_000_000_000  # steps must satisfy 0 <= step < 10**12
STEP_DECIMALS = 6  # 3.x stores a step as whole and micro (1e-6) parts
# Datetime values 3.x accepts (IngestCode DATETIME_VALUE_OUT_OF_RANGE, neptune-api ingest.proto:125-126:
# "Timestamp allowed range is (1900-01-01 to 2299-12-31)"), both days included.
MIN_DATETIME = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
MAX_DATETIME = dt.datetime(2299, 12, 31, 23, 59, 59, 999_000, tzinfo=dt.timezone.utc)
DATETIME_RANGE_TEXT = f"3.x's {MIN_DATETIME:%Y-%m-%d}..{MAX_DATETIME:%Y-%m-%d}"
# ASSUMPTION: the range is checked on datetime values (the code's name), not on series points' timestamps;
# those are sent as they are, and a point the service rejected would be reported with its series.

# (case, rule) pairs, rendered into docs/mapping.md.
LIMIT_RULES: tuple[tuple[str, str], ...] = (
    (
        f"attribute path over {MAX_ATTRIBUTE_PATH_BYTES:,} bytes (UTF-8)",
        "shortened to its longest prefix that fits with `~` and 8 hex digits of the SHA-256 of the full path "
        "appended (deterministic, so a re-run writes the same path); reported with both paths",
    ),
    (
        "string-series value over 1 MiB (UTF-8)",
        "the point is kept, its value cut to the first 1 MiB on a character boundary; reported per path with the "
        "number of points cut and the first step",
    ),
    (
        "step below 0 or at/beyond 10^12",
        "the point is not sent (3.x cannot store it); reported per path with the count and the first such step",
    ),
    (
        "two points of a series on the same step once rounded to 6 decimals (or a step not above the previous one)",
        "the first point is kept (as 3.x itself keeps the first value logged at a step), later ones are not sent; "
        "reported per path with the count and the first step",
    ),
    (
        "a point's timestamp earlier than the previous point's",
        "the point is kept with the previous point's timestamp (3.x rejects decreasing timestamps); reported per "
        "path with the count",
    ),
    (
        f"run id (custom_run_id, else sys/id) over {MAX_RUN_ID_BYTES:,} bytes or containing `/`",
        "`/` replaced by `_`, then shortened like long paths; the legacy ids stay in legacy_sys/*; reported",
    ),
    (
        "datetime before 1900-01-01 or after 2299-12-31 (a config, or the run's creation time)",
        "written as its exact ISO 8601 string (`YYYY-MM-DDTHH:MM:SS.mmmZ`) at the same path instead of a "
        "datetime; a creation time out of range is not set (the run gets the import time; the legacy value "
        "stays in legacy_sys/creation_time as a string); reported",
    ),
    (
        f"run name (experiment name) over {MAX_EXPERIMENT_NAME_BYTES:,} bytes",
        "shortened like long paths; the full name stays in legacy_sys/name; reported",
    ),
)


def _shorten(text: str, max_bytes: int) -> str:
    """Longest prefix that fits with ``~`` and 8 hex digits of the full text's SHA-256, within max_bytes."""
    suffix = "~" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    budget = max_bytes - len(suffix)
    prefix = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return prefix + suffix


def fit_attribute_path(path: str) -> str:
    """`path` when it fits 3.x, else its deterministic shortened form."""
    if len(path.encode("utf-8")) <= MAX_ATTRIBUTE_PATH_BYTES:
        return path
    return _shorten(path, MAX_ATTRIBUTE_PATH_BYTES)


def fit_run_id(run_id: str) -> str:
    """A run id neptune-scale accepts: no "/", at most 730 bytes, not empty."""
    fixed = run_id.replace("/", "_") or "_"
    if len(fixed.encode("utf-8")) > MAX_RUN_ID_BYTES:
        fixed = _shorten(fixed, MAX_RUN_ID_BYTES)
    return fixed


def fit_experiment_name(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_EXPERIMENT_NAME_BYTES:
        return name
    return _shorten(name, MAX_EXPERIMENT_NAME_BYTES)


def datetime_in_range(moment: dt.datetime) -> bool:
    """Whether 3.x accepts `moment` as a datetime value (naive datetimes are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return MIN_DATETIME <= moment <= MAX_DATETIME


def datetime_out_of_range_detail(text: str, path: str) -> str:
    """The report's detail for a datetime config outside the range, written as its ISO string."""
    return f"{text} is outside {DATETIME_RANGE_TEXT}; written as that ISO string at {path}"


def path_shortened_detail(fitted: str) -> str:
    """The report's detail for a path fit_attribute_path shortened."""
    return f"3.x path over {MAX_ATTRIBUTE_PATH_BYTES:,} bytes shortened to {fitted!r}"


def name_shortened_detail(fitted: str) -> str:
    """The report's detail for a run name fit_experiment_name shortened."""
    return f"run name over {MAX_EXPERIMENT_NAME_BYTES:,} bytes shortened to {fitted!r}"


def fit_string_value(value: str) -> str:
    """`value` cut to at most 1 MiB of UTF-8 on a character boundary."""
    if len(value) * 4 <= MAX_STRING_SERIES_VALUE_BYTES:
        return value
    encoded = value.encode("utf-8")
    if len(encoded) <= MAX_STRING_SERIES_VALUE_BYTES:
        return value
    return encoded[:MAX_STRING_SERIES_VALUE_BYTES].decode("utf-8", errors="ignore")


def step_micros(steps: np.ndarray) -> np.ndarray:
    """Steps as whole micro-units (int64), exactly: the whole part of the float, then its fraction rounded to
    6 decimals (the fraction `step - floor(step)` is exact in float64, so a step of 999999999999.0 stays
    999999999999 and 2**39 + 0.25 keeps its .25). neptune-scale's decompose_step computes round(step * 1e6)
    instead, which shifts steps above ~9e9 (metadata_splitter.py:557); nmig never uses it. Out-of-range steps
    (never sent) become 0."""
    values = np.asarray(steps, dtype=np.float64)
    safe = np.where(np.isfinite(values) & (values >= 0) & (values < MAX_STEP), values, 0.0)
    whole = np.floor(safe)
    micro = np.rint((safe - whole) * 1e6)  # a fraction rounding up to 1.0 carries into the whole part below
    return whole.astype(np.int64) * 1_000_000 + micro.astype(np.int64)


def step_of_micros(micros: int) -> float:
    """The float step of micro-units: the double nearest to micros / 10**6 (Python divides integers correctly
    rounded), so it is the inverse of step_micros for every step 3.x can hold. Neither float(micros) / 1e6
    (above 2**53 micro-units, steps above ~9e9, the integer is rounded first) nor whole + micro / 1e6 (43 +
    0.132479 is one double above 43.132479) is."""
    return int(micros) / 1_000_000


@dataclass
class SeriesAdjustments:
    """Counts of what the filter changed on one series, for the import report."""

    out_of_range: int = 0
    first_out_of_range_step: float | None = None
    same_step: int = 0
    first_same_step: float | None = None
    timestamps_raised: int = 0
    values_cut: int = 0
    first_cut_step: float | None = None

    def events(self) -> Iterator[tuple[str, str]]:
        """(case, what was done) pairs for the report; nothing when the series fit as it was."""
        if self.out_of_range:
            yield (
                "step_out_of_range",
                f"{self.out_of_range} point(s) with a step below 0 or at/beyond 1e12 not sent "
                f"(first at step {self.first_out_of_range_step!r})",
            )
        if self.same_step:
            yield (
                "step_collision",
                f"{self.same_step} point(s) on a step not above the previous one after rounding to {STEP_DECIMALS} "
                f"decimals not sent; the first point at each step kept (first at step {self.first_same_step!r})",
            )
        if self.timestamps_raised:
            yield (
                "timestamp_decreasing",
                f"{self.timestamps_raised} point(s) had a timestamp earlier than the previous point's; "
                "sent with the previous point's timestamp",
            )
        if self.values_cut:
            yield (
                "string_value_too_long",
                f"{self.values_cut} value(s) over 1 MiB cut to 1 MiB (first at step {self.first_cut_step!r})",
            )


@dataclass
class SeriesFilter:
    """Applies the step and timestamp rules to one series streamed in batches (state carries across batches).

    `resume_after_micros`: on a resumed import, points at or below the step the target already holds are
    neither sent nor counted as adjustments (they are already there).
    """

    resume_after_micros: int | None = None
    adjustments: SeriesAdjustments = field(default_factory=SeriesAdjustments)
    _last_micros: int | None = None
    _last_ts: int | None = None
    # the last batch's mask of the points the 3.x rules keep, before the resume cut (what the target holds or
    # is sent): the re-sync's digests (sync.SeriesDigests) cover these
    planned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def apply(self, steps: np.ndarray, timestamps_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (keep mask, micro-steps, timestamps_ms adjusted) for one batch, in input order."""
        steps = np.asarray(steps, dtype=np.float64)
        micros = step_micros(steps)
        in_range = (steps >= 0) & (steps < MAX_STEP) & np.isfinite(steps)
        adj = self.adjustments
        out = int((~in_range).sum())
        if out:
            adj.out_of_range += out
            if adj.first_out_of_range_step is None:
                adj.first_out_of_range_step = float(steps[~in_range][0])
        # A point is kept when its step is above every kept step before it (running maximum), which keeps the
        # first point at each step and drops anything non-increasing.
        candidate = np.where(in_range, micros, np.iinfo(np.int64).min)
        previous = np.iinfo(np.int64).min if self._last_micros is None else self._last_micros
        running_max = np.maximum.accumulate(np.concatenate(([previous], candidate)))[:-1]
        keep = in_range & (candidate > running_max)
        collided = in_range & ~keep
        n_collided = int(collided.sum())
        if n_collided:
            adj.same_step += n_collided
            if adj.first_same_step is None:
                adj.first_same_step = float(steps[collided][0])
        if in_range.any():
            self._last_micros = int(max(previous, int(candidate.max())))
        timestamps = np.asarray(timestamps_ms, dtype=np.int64).copy()
        if keep.any():
            kept_ts = timestamps[keep]
            start = np.iinfo(np.int64).min if self._last_ts is None else self._last_ts
            raised = np.maximum.accumulate(np.concatenate(([start], kept_ts)))[1:]
            adj.timestamps_raised += int((raised != kept_ts).sum())
            timestamps[keep] = raised
            self._last_ts = int(raised[-1])
        # Adjustments describe the whole series; on a resumed import, points the target already holds are
        # then left out of what is sent.
        self.planned = keep.copy()
        if self.resume_after_micros is not None:
            keep &= micros > self.resume_after_micros
        return keep, micros, timestamps

    @property
    def last_micros(self) -> int | None:
        """The last step (micro-units) kept so far: where the series ends in 3.x once everything is sent."""
        return self._last_micros

    def fit_values(self, values: list[str], steps: np.ndarray) -> list[str]:
        """String-series values cut to 1 MiB where needed (counted in the adjustments)."""
        fitted = []
        for value, step in zip(values, steps, strict=True):
            cut = fit_string_value(value)
            if cut is not value:
                self.adjustments.values_cut += 1
                if self.adjustments.first_cut_step is None:
                    self.adjustments.first_cut_step = float(step)
            fitted.append(cut)
        return fitted
