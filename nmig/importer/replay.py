"""Replaying one planned run into 3.x through a RunSink, streaming series from the bundle.

Order matters for exactly-once and error attribution:
1. the run creation, configs, tags, files and file series are recorded through the official Run API (small
   and idempotent on a re-run: configs overwrite, tags are a set, a file attribute is re-pointed);
2. the client's sync threads upload the files, then send those operations; the series wait until the service
   confirmed them (the run exists);
3. float and string series go straight to the service, one attribute per request, built in this thread and
   submitted from another (client.DirectSeriesSender), with at most MAX_IN_FLIGHT unconfirmed requests;
4. the run counts as imported when every request and upload is confirmed and no error came back.
On a resumed run, series points at or below the last step the target already holds are not sent again
(`ResumePoint`, read with neptune-query).
"""

from __future__ import annotations

import mimetypes
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nmig.importer import client as nclient
from nmig.importer import wire
from nmig.importer.limits import SeriesFilter
from nmig.importer.plan import RunPlan, safe_file_name
from nmig.importer.report import Event
from nmig.schema import BundleError, EntityBundle

# Requests sent but not yet confirmed processed before the writer waits for the service (bounds what is in
# flight: up to 50,000 points each).
MAX_IN_FLIGHT = 8
BATCH_ROWS = 65_536
PROCESSING_TIMEOUT_S = 600.0

# Client errors that relate to series points, configs, files: used to narrow an error to the paths it can be
# about when a request carried several attributes.
_SERIES_ERRORS = ("Series", "Step", "Timestamp", "Preview")
# What the service answers to a point at or below a series' last step.
_DUPLICATE_ERRORS = ("NeptuneSeriesStepNonIncreasing", "NeptuneSeriesPointDuplicate")


@dataclass
class ResumePoint:
    """What the target already holds for a run that was interrupted: the last step (in micro-units) of each
    series, keyed by 3.x path."""

    last_micros: dict[str, int] = field(default_factory=dict)


@dataclass
class RunOutcome:
    sys_id: str
    target_run_id: str
    imported: bool
    events: list[Event] = field(default_factory=list)
    points_sent: int = 0
    files_sent: int = 0
    warnings: int = 0


def path_segments(batch: pa.RecordBatch) -> Iterator[tuple[str, int, int]]:
    """(path, start, end) runs of equal path within a batch (rows are grouped by path in the bundle)."""
    column = batch.column(0)
    if isinstance(column, pa.DictionaryArray):
        indices = column.indices.to_numpy(zero_copy_only=False)
        names = column.dictionary.to_pylist()
    else:
        decoded = column.dictionary_encode()
        indices = decoded.indices.to_numpy(zero_copy_only=False)
        names = decoded.dictionary.to_pylist()
    if len(indices) == 0:
        return
    cuts = np.flatnonzero(np.diff(indices)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(indices)]))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield names[int(indices[start])], start, end


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(message: str) -> str:
    """The first meaningful line of a client error message (which comes with colour codes and banners)."""
    for line in _ANSI.sub("", message or "").splitlines():
        line = line.strip()
        if line and not line.endswith(":") or line.startswith("Neptune"):
            return line[:300]
    return ""


def timestamps_ms(column: pa.Array) -> np.ndarray:
    """A bundle timestamp column as int64 milliseconds since the epoch."""
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def scan_adjustments(plan: RunPlan, entity: EntityBundle) -> list[Event]:
    """What the 3.x limits will change in this run's series, found by reading them without sending (for the
    dry run; the replay applies the same SeriesFilter while it streams)."""
    events: list[Event] = []
    for kind in ("float", "string", "file"):
        filters: dict[str, SeriesFilter] = {}
        columns = ["path", "step", "timestamp"] + (["value"] if kind != "file" else [])
        try:
            for batch in entity.iter_series(kind, batch_rows=BATCH_ROWS, columns=columns):
                for legacy_path, start, end in path_segments(batch):
                    if plan.series_target(kind, legacy_path) is None:
                        continue
                    part = batch.slice(start, end - start)
                    series_filter = filters.setdefault(legacy_path, SeriesFilter())
                    steps = part.column("step").to_numpy(zero_copy_only=False)
                    keep, _micros, _stamps = series_filter.apply(steps, timestamps_ms(part.column("timestamp")))
                    if kind == "string":
                        raw = part.column("value").to_pylist()
                        series_filter.fit_values([raw[i] or "" for i in np.flatnonzero(keep).tolist()], steps[keep])
        except BundleError as exc:
            events.append(Event(plan.sys_id, "", "failed", f"{kind} series: {exc}"))
        for legacy_path, series_filter in filters.items():
            events.extend(Event(plan.sys_id, legacy_path, case, detail) for case, detail in series_filter.adjustments.events())
    return events


class _PipelinedSender:
    """Builds requests of one attribute's points in the caller's thread and submits them from a second
    thread, so building the next request overlaps with the service ingesting the last one."""

    def __init__(self, direct: nclient.DirectSeriesSender, on_points: Callable[[int], None]) -> None:
        self._direct = direct
        self._on_points = on_points
        self._queue: queue.Queue[tuple[Any, tuple[str, ...]] | None] = queue.Queue(maxsize=1)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._submit_loop, name="nmig-submit", daemon=True)
        self._path: str | None = None
        self._points = 0
        self._bytes = 0
        self._floats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # float points, encoded at flush
        self._request: Any = None  # string points, added to a message as they come

    def __enter__(self) -> _PipelinedSender:
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._queue.put(None)
            self._thread.join()
        if self._failure is not None and exc_type is None:
            raise self._failure

    def _submit_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._failure is not None:
                continue
            request, labels = item
            try:
                while self._direct.poll() >= MAX_IN_FLIGHT:
                    time.sleep(0.01)
                self._direct.send(request, labels)
                self._on_points(len(request.update_batch.snapshots))
            except BaseException as exc:  # surfaced in the caller's thread by __exit__
                self._failure = exc

    def _flush(self) -> None:
        if self._points:
            assert self._path is not None
            if self._floats:
                micros, values, stamps = (np.concatenate(parts) for parts in zip(*self._floats, strict=True))
                request = self._direct.encoded_request(wire.encode_float_snapshots(self._path, micros, values, stamps))
            else:
                request = self._request
            self._queue.put((request, (self._path,)))
        self._floats, self._request, self._points, self._bytes = [], None, 0, 0
        if self._failure is not None:
            raise self._failure

    def add_float(self, path: str, micros: np.ndarray, values: np.ndarray, stamps: np.ndarray) -> None:
        start = 0
        while start < len(micros):
            if path != self._path or self._points >= nclient.DIRECT_REQUEST_POINTS:
                self._flush()
                self._path = path
            end = min(len(micros), start + nclient.DIRECT_REQUEST_POINTS - self._points)
            self._floats.append((micros[start:end], values[start:end], stamps[start:end]))
            self._points += end - start
            start = end

    def add_strings(self, path: str, micros: list[int], values: list[str], stamps: list[int]) -> None:
        for micro, value, stamp in zip(micros, values, stamps, strict=True):
            size = len(path) + len(value.encode("utf-8")) + 40
            if path != self._path or self._points >= nclient.DIRECT_REQUEST_POINTS or (
                self._points and self._bytes + size > nclient.DIRECT_REQUEST_BYTES
            ):
                self._flush()
                self._path = path
            if self._request is None:
                self._request = self._direct.new_request()
            nclient.append_points(self._request, path, [micro], [value], [stamp], "string")
            self._points += 1
            self._bytes += size


class RunReplayer:
    def __init__(
        self,
        plan: RunPlan,
        entity: EntityBundle,
        sink: nclient.RunSink,
        resume: ResumePoint | None,
        on_points: Callable[[int], None] = lambda n: None,
        not_as_sent: Callable[[dict[str, Any]], list[str] | None] = lambda expected: None,
        confirm_last_steps: Callable[[list[str]], dict[str, int]] = lambda paths: {},
    ) -> None:
        self.plan = plan
        self.entity = entity
        self.sink = sink
        self.resume = resume
        self.on_points = on_points
        self.not_as_sent = not_as_sent
        self.confirm_last_steps = confirm_last_steps
        self._expected_last: dict[str, int] = {}  # 3.x path -> last step sent or meant to be there (micro-units)
        self.outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
        self._tmp = sink.work_dir.parent / f"{sink.work_dir.name}.files"
        self._tmp_count = 0

    # ---- helpers ----------------------------------------------------------------------------------------

    def _event(self, path: str, case: str, detail: str) -> None:
        self.outcome.events.append(Event(self.plan.sys_id, path, case, detail))

    def _filter(self, target: str) -> SeriesFilter:
        last = self.resume.last_micros.get(target) if self.resume else None
        return SeriesFilter(resume_after_micros=last)

    def _report_adjustments(self, legacy_path: str, series_filter: SeriesFilter) -> None:
        for case, detail in series_filter.adjustments.events():
            self._event(legacy_path, case, detail)

    def _materialize(self, content_hash: str, size: int | None, name: str) -> tuple[Path, int]:
        """Decompress a bundle file into the run's scratch folder (verified against its hash and size)."""
        self._tmp_count += 1
        folder = self._tmp / str(self._tmp_count)
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / name
        with self.entity.open_file(content_hash, size) as source, open(local, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return local, local.stat().st_size

    # ---- the replay ----------------------------------------------------------------------------------------

    def replay(self) -> RunOutcome:
        plan, sink = self.plan, self.sink
        try:
            sink.log_configs(dict(plan.configs))
            sink.add_tags(plan.tags, group_tags=False)
            sink.add_tags(plan.group_tags, group_tags=True)
            self._files()
            self._file_series()
            sink.start_sync()
            # Series go straight to the service; the run must exist there first.
            created = sink.wait_for_processing(PROCESSING_TIMEOUT_S, files_too=False)
            direct = nclient.DirectSeriesSender(sink, sink.project)
            finished = False
            if created:
                with _PipelinedSender(direct, self.on_points) as sender:
                    self._value_series("float", sender)
                    self._value_series("string", sender)
                finished = direct.wait(PROCESSING_TIMEOUT_S) and sink.wait_for_processing(PROCESSING_TIMEOUT_S)
            errors = [(sink.labels_for(e.sequence_id), e) for e in sink.drain_errors()] + direct.errors
            if finished:
                errors = self._isolate_rejected(errors)
            self._collect_errors(finished, errors)
        finally:
            sink.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.outcome

    def _files(self) -> None:
        for item in self.plan.files:
            try:
                local, size = self._materialize(item.content_hash, item.size, item.name)
            except (BundleError, OSError) as exc:
                self._event(item.legacy_path, "failed", f"{item.target}: {exc}")
                continue
            mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            self.sink.assign_file(item.target, local, size, mime)
            self.outcome.files_sent += 1

    def _file_series(self) -> None:
        filters: dict[str, SeriesFilter] = {}
        descriptions: dict[str, int] = {}
        try:
            batches = self.entity.iter_series("file", batch_rows=1024)
            for batch in batches:
                table = pa.Table.from_batches([batch])
                for legacy_path, start, end in path_segments(batch):
                    item = self.plan.series_target("file", legacy_path)
                    if item is None:
                        continue
                    part = table.slice(start, end - start)
                    series_filter = filters.setdefault(legacy_path, self._filter(item.target))
                    steps = part.column("step").to_numpy()
                    keep, micros, stamps = series_filter.apply(steps, timestamps_ms(part.column("timestamp").combine_chunks()))
                    names = part.column("name").to_pylist()
                    descs = part.column("description").to_pylist()
                    hashes = part.column("file_hash").to_pylist()
                    sizes = part.column("file_size").to_pylist()
                    exts = part.column("ext").to_pylist()
                    for i in np.flatnonzero(keep).tolist():
                        if descs[i]:
                            descriptions[legacy_path] = descriptions.get(legacy_path, 0) + 1

                        name = safe_file_name(names[i], exts[i], f"step_{int(micros[i])}")
                        try:
                            local, size = self._materialize(hashes[i], sizes[i], name)
                        except (BundleError, OSError) as exc:
                            self._event(legacy_path, "failed", f"point at step {steps[i]!r}: {exc}")
                            continue
                        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
                        self.sink.log_file(item.target, local, size, mime, int(micros[i]), int(stamps[i]))
                        self.outcome.files_sent += 1
        except BundleError as exc:
            self._event("", "failed", f"file series: {exc}")
        self._remember_last_steps("file", filters)
        for legacy_path, series_filter in filters.items():
            self._report_adjustments(legacy_path, series_filter)
        for legacy_path, count in descriptions.items():
            self._event(
                legacy_path,
                "description_not_written",
                f"{count} point description(s): 3.x file series have no description field; they stay in the bundle",
            )

    def _value_series(self, kind: str, sender: _PipelinedSender) -> None:
        filters: dict[str, SeriesFilter] = {}
        try:
            for batch in self.entity.iter_series(kind, batch_rows=BATCH_ROWS, columns=["path", "step", "value", "timestamp"]):
                for legacy_path, start, end in path_segments(batch):
                    item = self.plan.series_target(kind, legacy_path)
                    if item is None:
                        continue
                    part = batch.slice(start, end - start)
                    series_filter = filters.setdefault(legacy_path, self._filter(item.target))
                    steps = part.column(1).to_numpy(zero_copy_only=False)
                    keep, micros, stamps = series_filter.apply(steps, timestamps_ms(part.column(3)))
                    if not keep.any():
                        continue
                    if kind == "float":
                        values = part.column(2).to_numpy(zero_copy_only=False)[keep]
                        sender.add_float(item.target, micros[keep], values, stamps[keep])
                        self.outcome.points_sent += int(keep.sum())
                    else:
                        kept_micros = micros[keep].tolist()
                        kept_stamps = stamps[keep].tolist()
                        raw = part.column(2).to_pylist()
                        values = [raw[i] if raw[i] is not None else "" for i in np.flatnonzero(keep).tolist()]
                        values = series_filter.fit_values(values, steps[keep])
                        sender.add_strings(item.target, kept_micros, values, kept_stamps)
                        self.outcome.points_sent += len(kept_micros)
        except BundleError as exc:
            self._event("", "failed", f"{kind} series: {exc}")
        self._remember_last_steps(kind, filters)
        for legacy_path, series_filter in filters.items():
            self._report_adjustments(legacy_path, series_filter)

    def _remember_last_steps(self, kind: str, filters: dict[str, SeriesFilter]) -> None:
        for legacy_path, series_filter in filters.items():
            item = self.plan.series_target(kind, legacy_path)
            if item is not None and series_filter.last_micros is not None:
                self._expected_last[item.target] = series_filter.last_micros

    def _forgive_rejected_duplicates(
        self, errors: list[tuple[tuple[str, ...], nclient.ClientError]]
    ) -> list[tuple[tuple[str, ...], nclient.ClientError]]:
        """On a resumed run, the service may reject points as not increasing because a request of the
        interrupted import was processed after the resume point was read (the real service ingests
        asynchronously). Those points are already there, never stored twice. When the target's series now
        ends exactly at the bundle's last step, the rejection is reported as a warning, not a failure."""
        if self.resume is None:
            return errors
        suspects = {
            path
            for labels, error in errors
            if error.kind == "error" and error.error_type in _DUPLICATE_ERRORS
            for path in labels
            if path in self._expected_last
        }
        if not suspects:
            return errors
        try:
            found = self.confirm_last_steps(sorted(suspects))
        except Exception as exc:  # cannot confirm: the errors stand
            self._event("", "client_warning", f"could not read the series back to check rejected points: {exc}"[:300])
            return errors
        complete = {path for path in suspects if found.get(path) == self._expected_last[path]}
        kept = []
        forgiven: dict[tuple[str, ...], set[str]] = {}
        for labels, error in errors:
            if error.error_type in _DUPLICATE_ERRORS and labels and set(labels) <= complete:
                self.outcome.warnings += 1
                forgiven.setdefault(labels, set()).add(error.error_type)
            else:
                kept.append((labels, error))
        for labels, kinds in forgiven.items():
            self._event(
                ", ".join(self.plan.sources.get(p, p) for p in labels),
                "duplicates_rejected",
                f"{', '.join(sorted(kinds))}: points the interrupted import had already sent were rejected, none "
                "stored twice; the series ends at its last step as in the bundle",
            )
        return kept

    def _isolate_rejected(
        self, errors: list[tuple[tuple[str, ...], nclient.ClientError]]
    ) -> list[tuple[tuple[str, ...], nclient.ClientError]]:
        """One rejected value must not take its neighbours with it. The service names no attribute in a
        request status, and the client merges logged operations into one request, so when a request of
        configs, tags or file attributes was rejected, everything written that way is read back; what the
        target does not hold as sent is sent again, each item in a request of its own. The items rejected
        alone are the ones reported; the others are stored now. File-series points are not read back here
        (their errors stand, and a re-run sends them again)."""
        rejected = [
            (labels, error) for labels, error in errors
            if error.kind == "error" and not any(s in error.error_type for s in _SERIES_ERRORS)
            and not set(labels) & self._direct_targets()
        ]
        written = self.sink.written
        if not rejected or not written:
            return errors
        missing = self.not_as_sent(dict(written))
        if missing is None:  # could not read the target back: the errors stand as reported
            return errors
        alone = nclient.DirectSeriesSender(self.sink, self.sink.project)
        for path in missing:
            alone.send(self.sink.single_item_request(path), (path,))
        if not alone.wait(PROCESSING_TIMEOUT_S):
            return errors
        kept = [item for item in errors if item not in rejected]
        kept += [(labels, error) for labels, error in alone.errors if error.kind != "retryable"]
        lost = {path for labels, error in alone.errors if error.kind == "error" for path in labels}
        stored = [path for path in missing if path not in lost]
        if stored:
            self._event(
                "",
                "sent_again_alone",
                f"{len(stored)} item(s) of a rejected request were sent again, each alone, and stored: "
                + ", ".join(self.plan.sources.get(p, p) for p in stored)[:300],
            )
        return kept

    def _direct_targets(self) -> set[str]:
        """The 3.x paths of float and string series (sent as direct requests of one attribute each)."""
        return {s.target for s in self.plan.series if s.kind != "file"}

    def _collect_errors(self, finished: bool, errors: list[tuple[tuple[str, ...], nclient.ClientError]]) -> None:
        failed = any(e.case == "failed" for e in self.outcome.events)
        legacy_of = self.plan.sources
        errors = self._forgive_rejected_duplicates(errors)
        for labels, error in errors:
            if error.kind == "retryable":
                self.outcome.warnings += 1
                continue
            if any(s in error.error_type for s in _SERIES_ERRORS):
                narrowed = [p for p in labels if any(p == s.target for s in self.plan.series)]
                labels = tuple(narrowed) or labels
            where = ", ".join(legacy_of.get(p, p) for p in labels) if labels else ""
            line = _first_line(error.message)
            detail = line if line.startswith(error.error_type) else f"{error.error_type}: {line}"
            if len(labels) > 1:
                detail += f" (one of the {len(labels)} attributes sent together: {', '.join(labels)[:300]})"
            if error.kind == "warning":
                self.outcome.warnings += 1
                self._event(where, "client_warning", detail)
            else:
                failed = True
                self._event(where, "failed", detail)
        if not finished:
            failed = True
            ops, files = self.sink.pending()
            self._event(
                "",
                "failed",
                f"the service did not confirm everything sent ({ops} operation(s), {files} file(s) unconfirmed); re-run to resume",
            )
        self.outcome.imported = not failed
