"""Replaying one planned run into 3.x through a RunSink, streaming series from the bundle.

Order matters for exactly-once and error attribution:
1. the run creation, configs, tags, files and file series are recorded through the official Run API (small
   and idempotent on a re-run: configs overwrite, tags are a set, a file attribute is re-pointed);
2. the client's sync threads upload the files and send those operations at once; the file references follow
   only when the files are uploaded (RunSink.release_file_refs); the series wait until the service accepted
   the run creation;
3. float and string series go straight to the service, one attribute per request, built in this thread and
   submitted from SUBMIT_LANES others (client.DirectSeriesSender; a series' requests in order through one),
   with at most MAX_IN_FLIGHT unconfirmed requests;
4. the run counts as imported when every request and upload is confirmed and no error came back.
On a resumed run, series points at or below the last step the target already holds are not sent again
(`ResumePoint`, read with neptune-query). A re-synced run (imported before from an older export of it, see
sync.py) is resumed the same way, with `previous`, the record of what its last import wrote: tags removed since
are removed, unchanged files are not uploaded again, and what 3.x cannot change is reported.
"""

from __future__ import annotations

import mimetypes
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nmig.importer import client as nclient
from nmig.importer import wire
from nmig.importer.plan import RunPlan, safe_file_name
from nmig.importer.points import BATCH_ROWS, PlannedPoints
from nmig.importer.report import Event
from nmig.importer.sync import SeriesDigests, SyncRecord, delta_events, removed_since
from nmig.schema import BundleError, EntityBundle
from nmig.schema.format import as_numpy

# Requests sent but not yet confirmed processed before the writer waits for the service (bounds what is in
# flight: up to 50,000 points each).
MAX_IN_FLIGHT = 8
# Threads submitting a run's series requests side by side (each series always through the same one).
SUBMIT_LANES = 4
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
    record: SyncRecord | None = None  # what the target holds once imported (sync.py), for the next re-sync


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(message: str) -> str:
    """The first meaningful line of a client error message (which comes with colour codes and banners)."""
    for line in _ANSI.sub("", message or "").splitlines():
        line = line.strip()
        if line and not line.endswith(":") or line.startswith("Neptune"):
            return line[:300]
    return ""


def scan_adjustments(plan: RunPlan, entity: EntityBundle) -> list[Event]:
    """What the 3.x limits will change in this run's series, found by reading them without sending (for the
    dry run; the replay applies the same SeriesFilter while it streams)."""
    events: list[Event] = []
    for kind in ("float", "string", "file"):
        stream = PlannedPoints(entity, plan, kind, columns=["value"] if kind != "file" else [])
        try:
            for chunk in stream:
                if kind == "string":
                    chunk.strings(np.flatnonzero(chunk.keep))
        except BundleError as exc:
            events.append(Event(plan.sys_id, "", "failed", f"{kind} series: {exc}"))
        events.extend(Event(plan.sys_id, legacy_path, case, detail) for legacy_path, case, detail in stream.adjustments())
    return events


class _PipelinedSender:
    """Builds requests of one attribute's points in the caller's thread and submits them from SUBMIT_LANES
    other threads, so building the next request overlaps with the service taking the last one, and the
    series of a run are submitted side by side instead of one round trip after another. All requests of
    one series go through the same lane, one after another, so the service receives each series' points in
    order (steps must increase within a series; series are independent of each other)."""

    def __init__(self, direct: nclient.DirectSeriesSender, on_points: Callable[[int], None]) -> None:
        self._direct = direct
        self._on_points = on_points
        # one queue and thread per lane; a lane holds at most one request waiting and one being submitted
        self._queues: list[queue.Queue[tuple[Any, tuple[str, ...]] | None]] = [
            queue.Queue(maxsize=1) for _ in range(SUBMIT_LANES)
        ]
        self._threads = [
            threading.Thread(target=self._submit_loop, args=(q,), name="nmig-submit", daemon=True) for q in self._queues
        ]
        self._lanes: dict[str, int] = {}  # path -> its lane, given round robin as series come
        self._failure: BaseException | None = None
        self._path: str | None = None
        self._points = 0
        self._bytes = 0
        self._floats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # float points, encoded at flush
        self._request: Any = None  # string points, added to a message as they come

    def __enter__(self) -> _PipelinedSender:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            for lane in self._queues:
                lane.put(None)
            for thread in self._threads:
                thread.join()
        if self._failure is not None and exc_type is None:
            raise self._failure

    def _submit_loop(self, lane: queue.Queue[tuple[Any, tuple[str, ...]] | None]) -> None:
        while (item := lane.get()) is not None:
            if self._failure is not None:
                continue
            request, labels = item
            try:
                # Statuses are asked for only when the window is full: a poll per send was a round trip each.
                while self._direct.in_flight >= MAX_IN_FLIGHT and self._direct.poll() >= MAX_IN_FLIGHT:
                    time.sleep(0.01)
                self._direct.send(request, labels)
                self._on_points(nclient.operation_points(request))
            except BaseException as exc:  # surfaced in the caller's thread by __exit__
                self._failure = exc

    def _lane(self, path: str) -> queue.Queue[tuple[Any, tuple[str, ...]] | None]:
        index = self._lanes.setdefault(path, len(self._lanes) % SUBMIT_LANES)
        return self._queues[index]

    def _flush(self) -> None:
        if self._points:
            assert self._path is not None
            if self._floats:
                micros, values, stamps = (np.concatenate(parts) for parts in zip(*self._floats, strict=True))
                request = self._direct.encoded_request(wire.encode_float_snapshots(self._path, micros, values, stamps), len(micros))
            else:
                request = self._request
            self._lane(self._path).put((request, (self._path,)))
        self._floats, self._request, self._points, self._bytes = [], None, 0, 0
        if self._failure is not None:
            raise self._failure

    def add_float(self, path: str, micros: np.ndarray, values: np.ndarray, stamps: np.ndarray) -> None:
        start = 0
        per_request = nclient.float_points_per_request(path)
        while start < len(micros):
            if path != self._path or self._points >= per_request:
                self._flush()
                self._path = path
            end = min(len(micros), start + per_request - self._points)
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
        previous: SyncRecord | None = None,
    ) -> None:
        self.plan = plan
        self.previous = previous  # a re-sync: what the last import of this run wrote
        self._digests = SeriesDigests(previous)
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

    def _stream(self, kind: str, columns: list[str], batch_rows: int = BATCH_ROWS) -> PlannedPoints:
        return PlannedPoints(
            self.entity, self.plan, kind, columns, self.resume.last_micros if self.resume else None, batch_rows
        )

    def _streamed(self, stream: PlannedPoints) -> None:
        """After a kind of series is streamed: where each series ends, and what the limits changed."""
        self._expected_last.update(stream.last_micros())
        for legacy_path, case, detail in stream.adjustments():
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
            if self.previous is not None:  # tags removed in 2.x since the last import
                sink.remove_tags(sorted(set(self.previous.tags) - set(plan.tags)), group_tags=False)
                sink.remove_tags(sorted(set(self.previous.group_tags) - set(plan.group_tags)), group_tags=True)
            self._files()
            self._file_series()
            sink.start_sync()
            # Series go straight to the service, after the run creation (accepted, not yet processed: see
            # RunSink.wait_for_submission).
            created = sink.wait_for_submission(PROCESSING_TIMEOUT_S)
            direct = nclient.DirectSeriesSender(sink, sink.project)
            finished = False
            if created:
                with _PipelinedSender(direct, self.on_points) as sender:
                    self._value_series("float", sender)
                    self._value_series("string", sender)
                sink.release_file_refs()
                finished = direct.wait(PROCESSING_TIMEOUT_S) and sink.wait_for_processing(PROCESSING_TIMEOUT_S)
            errors = [(sink.labels_for(e.sequence_id), e) for e in sink.drain_errors()] + direct.errors
            if finished:
                errors = self._isolate_rejected(errors)
            self._collect_errors(finished, errors)
            self._note_delta()
        finally:
            sink.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.outcome

    def _note_delta(self) -> None:
        """What the target holds now, for the next re-sync; on a re-sync, what it could not change."""
        plan = self.plan
        record = SyncRecord(
            version=self.entity.version,
            configs=list(plan.configs),
            tags=list(plan.tags),
            group_tags=list(plan.group_tags),
            files={item.target: item.content_hash for item in plan.files},
            series=self._digests.marks(self._expected_last),
            sources={target: legacy for target, legacy in plan.sources.items() if target != legacy},
        )
        self.outcome.record = record
        if self.previous is not None:
            removed = removed_since(self.previous, record.configs, list(record.files), [s.target for s in plan.series])
            self.outcome.events.extend(delta_events(plan.sys_id, self.previous, self._digests, removed, plan.sources))

    def _files(self) -> None:
        unchanged = self.previous.files if self.previous is not None else {}
        for item in self.plan.files:
            if unchanged.get(item.target) == item.content_hash:
                continue  # a re-sync: the target holds this file as it is
            try:
                local, size = self._materialize(item.content_hash, item.size, item.name)
            except (BundleError, OSError) as exc:
                self._event(item.legacy_path, "failed", f"{item.target}: {exc}")
                continue
            mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            self.sink.assign_file(item.target, local, size, mime)
            self.outcome.files_sent += 1

    def _file_series(self) -> None:
        descriptions: dict[str, int] = {}
        stream = self._stream("file", ["name", "description", "file_hash", "file_size", "ext"], batch_rows=1024)
        try:
            for chunk in stream:
                legacy_path, target = chunk.item.legacy_path, chunk.item.target
                names = chunk.column("name").to_pylist()
                descs = chunk.column("description").to_pylist()
                hashes = chunk.column("file_hash").to_pylist()
                sizes = chunk.column("file_size").to_pylist()
                exts = chunk.column("ext").to_pylist()
                self._digest(chunk, [hashes[i] for i in np.flatnonzero(chunk.planned).tolist()])
                for i in np.flatnonzero(chunk.keep).tolist():
                    if descs[i]:
                        descriptions[legacy_path] = descriptions.get(legacy_path, 0) + 1
                    micros = int(chunk.micros[i])
                    name = safe_file_name(names[i], exts[i], f"step_{micros}")
                    try:
                        local, size = self._materialize(hashes[i], sizes[i], name)
                    except (BundleError, OSError) as exc:
                        self._event(legacy_path, "failed", f"point at step {chunk.steps[i]!r}: {exc}")
                        continue
                    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
                    self.sink.log_file(target, local, size, mime, micros, int(chunk.stamps[i]))
                    self.outcome.files_sent += 1
        except BundleError as exc:
            self._event("", "failed", f"file series: {exc}")
        self._streamed(stream)
        for legacy_path, count in descriptions.items():
            self._event(
                legacy_path,
                "description_not_written",
                f"{count} point description(s): 3.x file series have no description field; they stay in the bundle",
            )

    def _value_series(self, kind: str, sender: _PipelinedSender) -> None:
        stream = self._stream(kind, ["value"])
        try:
            for chunk in stream:
                keep = chunk.keep
                if kind == "float":
                    self._digest(chunk, as_numpy(chunk.column("value"))[chunk.planned])
                else:
                    raw = chunk.column("value").to_pylist()
                    self._digest(chunk, [raw[i] for i in np.flatnonzero(chunk.planned).tolist()])
                if not keep.any():
                    continue
                target = chunk.item.target
                if kind == "float":
                    values = as_numpy(chunk.column("value"))[keep]
                    sender.add_float(target, chunk.micros[keep], values, chunk.stamps[keep])
                    self.outcome.points_sent += int(keep.sum())
                else:
                    values = chunk.strings(np.flatnonzero(keep))
                    sender.add_strings(target, chunk.micros[keep].tolist(), values, chunk.stamps[keep].tolist())
                    self.outcome.points_sent += len(values)
        except BundleError as exc:
            self._event("", "failed", f"{kind} series: {exc}")
        self._streamed(stream)

    def _digest(self, chunk: Any, values: Any) -> None:
        planned = chunk.planned
        self._digests.add(chunk.item.target, chunk.micros[planned], chunk.stamps[planned], values)

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
