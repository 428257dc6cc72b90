"""`nmig import`'s scheduler: plan every selected run of a bundle as it arrives, then have worker threads
replay them into a 3.x project, exactly once.

Only the schedule lives here. Around it: options.py and result.py (what is asked, what one invocation did),
project.py (the target project's name; target.py makes sure it exists), intake.py (which runs are taken in,
and as what), worker.py (one run in a worker thread), dry_run.py (`--dry-run`), report.py (the report file).

Concurrency: one process; `max_workers` threads each import one run at a time, with the client's sync
threads for that run beside it (see client.py); nothing is spawned per run. Measured on 2 shared cores with
the emulator on the same machine (300 small runs, benchmarks/bench_import.py --case small --workers N):
1 worker 8.4 runs/s, 2: 15.3, 4: 18.1, 8: 11.9 (GIL and the service's core saturate), hence the default 4.
A single long series uses one worker: building requests overlaps with the service ingesting the last one.

Files written next to the state file (default: inside the bundle, `import-state.<ws>__<project>.json`; with
`--shard I/N` every name carries the shard, `import-state.<ws>__<project>.shard-1-of-4.json`, so the shards
of one bundle never write one file; partition.py says which runs a shard takes, state.py how the shards'
states are read together):
* the state file (state.py): per legacy run, started / imported / failed, its 3.x run id and attempts;
* the import report (report.py: its cases, layout and I/O; docs/import-report.md), read by `nmig verify`;
  runs it skipped as already imported keep the items listed for them (found again in the bundle when no
  report has them);
* a `.<state name>.work/` scratch folder (the client's operation logs, decompressed files), removed at the end;
  for a state on object storage a temporary folder of this machine instead (in $NMIG_WORK_DIR if set).

For a bundle on object storage all of these but the scratch folder are on the store beside the bundle, so the
N machines of a sharded import share nothing but the bucket (state.StateFile).

Runs come from a `RunFeed`: for `nmig import` every selected run of the bundle at once; for `nmig migrate`
the runs whose bundles the export completes, as it completes them, so workers never wait for a batch to end.
The library prints progress only; the caller prints `ImportResult.summary()` and decides the exit.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from nmig import environment
from nmig.errors import NmigError
from nmig.importer import client as nclient
from nmig.importer import report, target
from nmig.importer.dry_run import dry_run
from nmig.importer.intake import RunIds, note_unimported, plan_models, plan_runs
from nmig.importer.options import ImportOptions
from nmig.importer.partition import shard_runs
from nmig.importer.plan import RunPlan, plan_project, select_runs
from nmig.importer.project import parse_project_map, resolve_project
from nmig.importer.replay import RunOutcome, scan_adjustments
from nmig.importer.report import Event
from nmig.importer.result import ImportResult
from nmig.importer.state import (
    FAILED,
    IMPORTED,
    STARTED,
    ImportState,
    StateFile,
    StateLock,
    default_state_path,
    state_family,
)
from nmig.importer.sync import synced_folder, write_record
from nmig.importer.target import ProjectOutcome, require_api_token
from nmig.importer.worker import RunWorker
from nmig.schema import Bundle, BundleError, EntityBundle

# How often an idle import asks a feed that is not finished for new runs.
FEED_POLL_S = 0.2


class RunFeed(Protocol):
    """Where the runs to import come from, as their bundles complete."""

    def poll(self) -> tuple[list[str], bool]:
        """(sys/ids of runs complete since the last call, True when no run will come after these). Must not
        block for long: the importer calls it between runs while its workers go on."""
        ...


class WholeBundle:
    """The feed of `nmig import`: every given run at once, then nothing more."""

    def __init__(self, sys_ids: list[str]) -> None:
        self._sys_ids = list(sys_ids)

    def poll(self) -> tuple[list[str], bool]:
        sys_ids, self._sys_ids = self._sys_ids, []
        return sys_ids, True


def _say(options: ImportOptions, message: str) -> None:
    if not options.quiet:
        print(message, file=sys.stderr)


def _items_of_imported_run(plan: RunPlan, entity: EntityBundle, earlier: list[dict[str, Any]]) -> list[Event]:
    """What the report said about a run imported by an earlier invocation (its adjustments, what was not
    written): taken from the first earlier report (this state file's, then the other shards') that lists the
    run as imported, else found again in the bundle (that invocation was killed before writing its report)."""
    for doc in earlier:
        listed = report.earlier_items(doc, plan.sys_id)
        if listed is not None:
            return listed
    return list(plan.events) + scan_adjustments(plan, entity)


def run_import(options: ImportOptions, progress: Callable[[int], None] | None = None, feed: RunFeed | None = None) -> ImportResult:
    """Everything `nmig import` does but printing its final line: returns what this invocation did (failed
    runs included: `ImportResult.raise_for_failures`); raises NmigError for bad input.

    Without `feed`, the runs are those of the bundle that `options.runs` selects; with one, those it yields,
    each imported as soon as it arrives (`options.runs` and `dry_run` do not apply then)."""
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    bundle = Bundle(options.bundle_dir, options.storage_options)  # BundleError (an NmigError) for not-a-bundle or a newer format
    project = resolve_project(options.project, bundle, parse_project_map(options.project_map))
    result = ImportResult(project=project)
    shard = options.shard
    if feed is None:
        every_run = bundle.entities("run")
        entities = shard_runs(select_runs(every_run, options.runs), every_run, options.experiments, shard)
        if options.dry_run:
            models_too = options.models_as_runs and not options.runs and (shard is None or shard.first)
            return dry_run(bundle, entities, result, options.experiments, models_too)
        feed = WholeBundle([e.sys_id for e in entities])
    elif options.runs or options.dry_run or shard is not None:
        raise ValueError("a feed chooses the runs itself: no --runs selection, shard or dry run with it")

    api_token = require_api_token(options.api_token)
    untagged_state = (
        StateFile.at(options.state_path, options.storage_options) if options.state_path is not None
        else default_state_path(bundle.root, project)
    )
    state_path = untagged_state.tagged(shard)
    # The state file, the report and the scratch folder: checked before 3.x is touched.
    hint = "pass --state PATH on a writable disk with free space" if options.state_path is None else ""
    scratch = _scratch_folder(state_path)
    environment.require_writable(scratch.parent, "folder of the import's scratch files", hint)
    environment.require_free(scratch.parent, environment.MIN_FREE_BYTES, "import's scratch folder", hint)
    if state_path.local is None:
        try:
            state_path.root.prepare()
        except OSError as exc:
            raise NmigError(f"the import state and report go to {state_path.root}, which is not writable ({exc}); "
                            "pass --state PATH for a file elsewhere") from None
    from nmig.loopback import prepare_client_env

    prepare_client_env(api_token)
    nclient.quiet_client_logs()

    source = bundle.info.get("source") if isinstance(bundle.info.get("source"), dict) else {}
    project_outcome = target.ensure_project(project, api_token, source, options.create_project, options.visibility)
    if project_outcome.key_dropped:
        print(f"nmig import: {project_outcome.message}", file=sys.stderr)  # said even under --quiet
        result.events.append(Event("", "", "project_key_taken", project_outcome.message))
    else:
        _say(options, project_outcome.message)

    with StateLock(untagged_state, shard):
        others = state_family(untagged_state)
        _Importer(options, bundle, result, api_token, project_outcome, state_path, scratch, progress, others).run(feed, started_at)
    return result


def _scratch_folder(state_path: StateFile) -> Path:
    """Where the client's operation logs and decompressed files go: beside a local state file, in a new
    temporary folder of this machine for one on a store."""
    local = state_path.local
    if local is not None:
        return local.parent / f".{local.name}.work"
    import os
    import tempfile

    base = os.environ.get("NMIG_WORK_DIR") or None
    return Path(tempfile.mkdtemp(prefix="nmig-import-", dir=base))  # removed with the scratch at the end


class _Importer:
    """One invocation under the state lock: runs from the feed are planned as they arrive and imported by
    `max_workers` threads; the state file marks each run, the report is written at the end."""

    def __init__(
        self,
        options: ImportOptions,
        bundle: Bundle,
        result: ImportResult,
        api_token: str,
        project_outcome: ProjectOutcome,
        state_path: StateFile,
        scratch: Path,
        progress: Callable[[int], None] | None,
        other_states: list[StateFile],
    ) -> None:
        self.options = options
        self.bundle = bundle
        self.result = result
        self.project = result.project
        self.api_token = api_token
        self.project_outcome = project_outcome
        # the other shards' states (and the unsharded one) say which runs they imported: skipped here too
        self.state = ImportState(state_path, self.project, options.bundle_dir, other_states)
        result.report_path = report.report_path_for(state_path)
        self.earlier_report = report.read_report(result.report_path, self.project)
        # where the items of a run imported under another state file are found
        self.earlier_elsewhere = [report.read_report(report.report_path_for(p), self.project) for p in self.state.others]
        # shard 1/N (or no shard) also takes what is in no run's partition: project metadata, models as runs
        self.takes_the_rest = options.shard is None or options.shard.first
        self.existing = set() if project_outcome.created else target.existing_run_ids(self.project, api_token)
        # The client's operation logs and decompressed files live next to the state file. What an interrupted
        # import left there is stale (a resumed run asks the target what it holds), so it is cleared first.
        self.scratch = scratch
        self.bar: Any = None
        self.bar_lock = threading.Lock()
        self.progress = progress
        self.queued = 0  # runs handed to the workers so far
        # runs of the bundle trashed in 2.x since they were exported (export.json "trashed", `export --update`)
        trashed = bundle.info.get("trashed") if isinstance(bundle.info.get("trashed"), dict) else {}
        self.trashed_in_source = {str(s) for s in trashed.get("run") or [] if isinstance(s, str)}
        self.trashed: list[RunPlan] = []  # those of them that arrived, in arrival order

    def run(self, feed: RunFeed, started_at: str) -> None:
        result = self.result
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        if not self.options.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="pt", unit_scale=True, desc="Importing", file=sys.stderr)
            if self.progress is None:
                self.progress = self._advance
        worker = RunWorker(self.project, self.api_token, self.state, self.scratch, self.existing, self.progress)
        workers = max(1, self.options.max_workers)
        seen: set[str] = set()
        owners = RunIds(result)
        todo: deque[tuple[RunPlan, EntityBundle]] = deque()
        finished = False
        ordered = False
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nmig-import") as pool:
                # The project-metadata run (configs only) goes first, beside the runs: after them it was a
                # chain of round trips (and, under faults, of the client's waits) that nothing overlapped.
                project_plan = plan_project(self.bundle.info) if self.takes_the_rest else None
                project_future = None if project_plan is None else pool.submit(worker.import_project_metadata, project_plan)
                futures: dict[Future[RunOutcome], RunPlan] = {}
                while True:
                    if not finished:
                        sys_ids, finished = feed.poll()
                        fresh = [sys_id for sys_id in dict.fromkeys(sys_ids) if sys_id not in seen]
                        seen.update(fresh)
                        todo.extend(self._arrived(fresh, owners))
                        if finished and self.options.models_as_runs and not self.options.runs and self.takes_the_rest:
                            # models and model versions as runs, once every run has arrived (a feed's export
                            # writes them last)
                            todo.extend(self._admit(plan_models(self.bundle, result, owners, self.options.experiments)))
                    if finished and not ordered:
                        # every run known (once): the largest start first, so the longest one (under 429s and
                        # 5xx, mostly the client's waits) does not begin last; heads are asserted afterwards
                        todo = deque(sorted(todo, key=lambda item: -sum(s.points for s in item[0].series)))
                        ordered = True
                    while todo and len(futures) < workers:
                        plan, entity = todo.popleft()
                        futures[pool.submit(worker.import_run, plan, entity)] = plan
                    if not futures:
                        if finished:
                            break
                        time.sleep(FEED_POLL_S)
                        continue
                    done, _ = wait(list(futures), timeout=None if finished else FEED_POLL_S, return_when=FIRST_COMPLETED)
                    for future in done:
                        plan = futures.pop(future)
                        try:
                            outcome = future.result()
                        except Exception as exc:  # e.g. the target unreadable for a resume, a client failure: this run only
                            outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
                            outcome.events.append(Event(plan.sys_id, "", "failed", f"{type(exc).__name__}: {exc}"[:500]))
                        _record(outcome, self.state, result)
                        self._show_runs()
                project_events = project_future.result() if project_future is not None else []
            self._trashed_runs(worker)
            if project_plan is not None:
                result.events.extend(project_events)
                if any(e.case == "failed" for e in project_events):
                    result.failed.append(project_plan.sys_id)
            for event in worker.assert_heads(self.bundle, result.plans, self.options.experiments):
                result.events.append(event)
                if event.case == "failed" and event.run not in result.failed:  # its data landed, its head did not
                    result.failed.append(event.run)
                    if event.run in result.imported:
                        result.imported.remove(event.run)
        finally:
            if self.bar is not None:
                self.bar.close()
            worker.close()
            self.state.finish()
            shutil.rmtree(self.scratch, ignore_errors=True)
            if self.takes_the_rest:  # listed once, by one shard
                note_unimported(self.bundle, result, self.options.models_as_runs)
            assert result.report_path is not None
            report.write_report(
                result.report_path,
                project=result.project,
                project_note=self.project_outcome.message,
                started_at=started_at,
                runs=result.report_runs(),
                targets={plan.sys_id: plan.target_run_id for plan in result.plans},
                events=result.events,
                earlier=self.earlier_report,
            )

    def _arrived(self, sys_ids: list[str], owners: RunIds) -> list[tuple[RunPlan, EntityBundle]]:
        """Plan runs that just arrived; those imported by an earlier invocation are skipped with their items."""
        entities = []
        for sys_id in sys_ids:
            try:
                entities.append(self.bundle.entity("run", sys_id))
            except BundleError as exc:
                self.result.refused.append(sys_id)
                self.result.events.append(Event(sys_id, "", "refused", str(exc)))
        return self._admit(plan_runs(entities, self.result, owners, self.options.experiments))

    def _admit(self, planned: list[tuple[RunPlan, EntityBundle]]) -> list[tuple[RunPlan, EntityBundle]]:
        """The planned runs still to import; those imported by an earlier invocation are skipped with their items."""
        todo = []
        for plan, entity in planned:
            if plan.sys_id in self.trashed_in_source:
                self.trashed.append(plan)
                if self.options.sync_trash:
                    continue  # not imported nor re-synced: moved to 3.x's trash at the end (_trashed_runs)
            if self.state.status(plan.sys_id) == IMPORTED and self.state.version(plan.sys_id) == entity.version:
                self.result.already.append(plan.sys_id)
                self.result.events.extend(_items_of_imported_run(plan, entity, [self.earlier_report, *self.earlier_elsewhere]))
                self.result.events.append(
                    Event(plan.sys_id, "", "already_imported", "imported by an earlier run of nmig import; skipped"
                          + ("" if plan.sys_id in self.state.runs else " (its state file is another shard's, or the one without --shard)"))
                )
                continue
            todo.append((plan, entity))
        if todo:
            self.queued += len(todo)
            if self.bar is not None:
                with self.bar_lock:
                    self.bar.total += sum(item.points for plan, _ in todo for item in plan.series)
                    self.bar.refresh()
        return todo

    def _trashed_runs(self, worker: RunWorker) -> None:
        """Runs trashed in 2.x after their export: reported; with --sync-trash moved to the 3.x project's
        trash when the target holds them (3.x's clients cannot delete a run; its API can trash one)."""
        result = self.result
        for plan in self.trashed:
            result.trashed.append(plan.sys_id)
            in_target = self.state.status(plan.sys_id) in (STARTED, IMPORTED, FAILED) or plan.target_run_id in self.existing
            if not self.options.sync_trash:
                result.events.append(Event(plan.sys_id, "", "trashed_in_source",
                                           f"trashed in 2.x after it was exported; it stays in 3.x as {plan.target_run_id!r} "
                                           "(pass --sync-trash to move it to 3.x's trash)"))
                continue
            if not in_target:
                result.events.append(Event(plan.sys_id, "", "trashed_in_target",
                                           "trashed in 2.x after it was exported, and never imported: not imported (--sync-trash)"))
                continue
            problem = target.trash_run(self.project, self.api_token, plan.target_run_id)
            if problem is None:
                result.events.append(Event(plan.sys_id, "", "trashed_in_target",
                                           f"trashed in 2.x after it was exported: run {plan.target_run_id!r} moved to the 3.x project's trash (--sync-trash)"))
            else:
                result.failed.append(plan.sys_id)
                result.events.append(Event(plan.sys_id, "", "failed", f"--sync-trash: could not trash run {plan.target_run_id!r} in 3.x: {problem}"))

    def _advance(self, points: int) -> None:
        with self.bar_lock:
            self.bar.update(points)

    def _show_runs(self) -> None:
        if self.bar is not None:
            done = len(self.result.imported) + len(self.result.failed) + len(self.result.refused)
            with self.bar_lock:
                self.bar.set_postfix_str(f"{done}/{self.queued} runs")


def _record(outcome: RunOutcome, state: ImportState, result: ImportResult) -> None:
    result.events.extend(outcome.events)
    earlier = (state.runs.get(outcome.sys_id).earlier_errors if state.runs.get(outcome.sys_id) else None) or []
    for item in earlier:
        result.events.append(Event(outcome.sys_id, item.get("path", ""), "earlier_attempt_failed", item.get("detail", "")))
    refused = any(e.case == "refused" and e.run == outcome.sys_id and not e.path for e in outcome.events)
    if outcome.imported:
        result.imported.append(outcome.sys_id)
        record = outcome.record
        if record is not None:  # before the mark: a run marked imported always has the record of what it holds
            write_record(synced_folder(state.path), outcome.sys_id, record)
        state.mark(outcome.sys_id, IMPORTED, outcome.target_run_id, version=record.version if record else None)
    elif refused:
        result.refused.append(outcome.sys_id)
    else:
        result.failed.append(outcome.sys_id)
        errors = [{"path": e.path, "detail": e.detail} for e in outcome.events if e.case == "failed"]
        state.mark(outcome.sys_id, FAILED, outcome.target_run_id, errors)
