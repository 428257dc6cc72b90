"""`nmig import`: plan every selected run of a bundle, then replay them into a 3.x project, exactly once.

Concurrency: one process; `max_workers` threads each import one run at a time, with the client's sync
threads for that run beside it (see client.py); nothing is spawned per run. Measured on 2 shared cores with
the emulator on the same machine (300 small runs, benchmarks/bench_import.py --case small --workers N):
1 worker 8.4 runs/s, 2: 15.3, 4: 18.1, 8: 11.9 (GIL and the service's core saturate), hence the default 4.
A single long series uses one worker: building requests overlaps with the service ingesting the last one.

Files written next to the state file (default: inside the bundle, `import-state.<ws>__<project>.json`):
* the state file (state.py): per legacy run, started / imported / failed, its 3.x run id and attempts;
* the import report (report.py: its cases, layout and I/O; docs/import-report.md), read by `nmig verify`;
  runs it skipped as already imported keep the items listed for them (found again in the bundle when no
  report has them);
* a `.<state name>.work/` scratch folder (the client's operation logs, decompressed files), removed at the end.

Runs come from a `RunFeed`: for `nmig import` every selected run of the bundle at once; for `nmig migrate`
the runs whose bundles the export completes, as it completes them, so workers never wait for a batch to end.
The library prints progress only; the caller prints `ImportResult.summary()` and decides the exit.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nmig.errors import NmigError, PartialFailure
from nmig.importer import client as nclient
from nmig.importer import report
from nmig.importer.plan import PlanRefused, RunPlan, plan_run, select_runs
from nmig.importer.replay import ResumePoint, RunOutcome, RunReplayer, scan_adjustments
from nmig.importer.report import Event
from nmig.importer.rules import NOT_IMPORTED_KINDS
from nmig.importer.state import (
    FAILED,
    IMPORTED,
    STARTED,
    ImportState,
    StateLock,
    default_state_path,
)
from nmig.importer.target import ProjectOutcome, require_api_token
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


@dataclass
class ImportOptions:
    bundle_dir: Path
    project: str | None  # "workspace/project", or "workspace" for the legacy project's name there
    api_token: str | None
    runs: Sequence[str] = ()  # --runs patterns (see plan.select_runs)
    max_workers: int = 4
    dry_run: bool = False
    create_project: bool = True
    state_path: Path | None = None
    quiet: bool = False


@dataclass
class ImportResult:
    """What one invocation did (the report, in contrast, covers every invocation)."""

    project: str
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    report_path: Path | None = None
    plans: list[RunPlan] = field(default_factory=list)

    def summary(self) -> str:
        """The one line `nmig import` ends with."""
        return (
            f"{len(self.imported)} run(s) imported into {self.project}; {len(self.already)} already imported; "
            f"{len(self.failed)} failed; {len(self.refused)} refused; {len(self.not_imported)} model entities not imported. "
            f"Report: {self.report_path}"
        )

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when some runs were not imported; the report says which and why."""
        if self.failed or self.refused:
            missing = self.failed + self.refused
            raise PartialFailure(
                f"{len(missing)} run(s) not imported ({', '.join(missing[:10])}); "
                f"see {self.report_path}; re-run the same command to retry"
            )


def _say(options: ImportOptions, message: str) -> None:
    if not options.quiet:
        print(message, file=sys.stderr)


def resolve_project(requested: str | None, bundle: Bundle) -> str:
    source = bundle.info.get("source") if isinstance(bundle.info.get("source"), dict) else {}
    legacy_name = source.get("project") if isinstance(source.get("project"), str) else None
    if legacy_name and "/" in legacy_name:
        legacy_name = legacy_name.split("/")[-1]
    if not requested:
        # A 3.x API token names no workspace, so the workspace has to be given.
        raise NmigError(
            "no target project: pass --project WORKSPACE/PROJECT, or --project WORKSPACE to keep the legacy "
            "project's name there (or set NEPTUNE_PROJECT)"
        )
    if "/" in requested:
        workspace, name = requested.split("/", 1)
    else:
        workspace, name = requested, legacy_name or ""
    if not re.fullmatch(r"[\w.-]+", workspace or "") or not re.fullmatch(r"[\w.-]+", name or ""):
        raise NmigError(f"invalid target project {requested!r}: expected WORKSPACE/PROJECT")
    return f"{workspace}/{name}"


def _plan_runs(entities: list[EntityBundle], result: ImportResult, owners: dict[str, str]) -> list[tuple[RunPlan, EntityBundle]]:
    """Plan each run; refuse those that cannot be planned, and those whose 3.x run id another run already took
    (custom ids made valid by the limits rules may meet): the first keeps it, the others are not merged into it.
    `owners` ({3.x run id: legacy id}) carries over between calls as runs arrive."""
    planned = []
    for entity in entities:
        try:
            plan = plan_run(entity)
        except PlanRefused as exc:
            result.refused.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "refused", str(exc)))
            continue
        first = owners.setdefault(plan.target_run_id, plan.sys_id)
        if first != plan.sys_id:
            result.refused.append(plan.sys_id)
            result.events.append(
                Event(plan.sys_id, "", "refused", f"its 3.x run id {plan.target_run_id!r} is already the target of run {first}")
            )
            continue
        result.plans.append(plan)
        planned.append((plan, entity))
    return planned


def _note_unimported(bundle: Bundle, result: ImportResult) -> None:
    """Models and model versions (not imported by design) and stray entries of the runs folder."""
    for kind in NOT_IMPORTED_KINDS:
        for entity in bundle.entities(kind):
            result.not_imported.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "not_imported", f"{kind}: {NOT_IMPORTED_KINDS[kind]}"))
    for stray in bundle.strays("run"):
        result.events.append(Event(stray, "", "refused", "not a run folder (unsafe name or not a folder)"))


def render_plan(result: ImportResult) -> str:
    """What `nmig import --dry-run` prints."""
    lines = [f"Dry run: nothing is written. Target project: {result.project}"]
    for plan in result.plans:
        summary = plan.summary()
        lines.append(
            f"run {plan.sys_id} -> {plan.target_run_id}"
            + (f" (name {plan.experiment_name!r})" if plan.experiment_name else "")
            + f": {summary['configs']} configs, {summary['tags']} tags, {summary['group_tags']} group tags, "
            f"{summary['files']} files, {len(plan.series)} series"
        )
        lines += [f"    {legacy} -> {target}" for legacy, target in summary["remapped"].items()]
        lines += [f"    series {s.legacy_path} -> {s.target} ({s.kind}, {s.points} points)" for s in plan.series]
    if result.events:
        lines.append("Skipped, adjusted or not imported:")
        lines += [f"    {e.run} {e.path or '-'}: {e.case}: {e.detail}" for e in result.events]
    return "\n".join(lines)


def _dry_run(bundle: Bundle, entities: list[EntityBundle], result: ImportResult) -> ImportResult:
    for plan, entity in _plan_runs(entities, result, {}):
        problems = entity.verify()
        if problems:  # what the import would refuse, found the same way
            result.plans.remove(plan)
            result.refused.append(plan.sys_id)
            result.events.append(Event(plan.sys_id, "", "refused", "bundle damaged: " + "; ".join(problems[:5])))
            continue
        result.events.extend(plan.events)
        result.events.extend(scan_adjustments(plan, entity))
    _note_unimported(bundle, result)
    return result


def _items_of_imported_run(plan: RunPlan, entity: EntityBundle, earlier: dict[str, Any]) -> list[Event]:
    """What the report said about a run imported by an earlier invocation (its adjustments, what was not
    written): taken from the earlier report when it lists the run as imported, else found again in the bundle
    (that invocation was killed before writing its report)."""
    listed = report.earlier_items(earlier, plan.sys_id)
    return list(plan.events) + scan_adjustments(plan, entity) if listed is None else listed


def run_import(options: ImportOptions, progress: Callable[[int], None] | None = None, feed: RunFeed | None = None) -> ImportResult:
    """Everything `nmig import` does but printing its final line: returns what this invocation did (failed
    runs included: `ImportResult.raise_for_failures`); raises NmigError for bad input.

    Without `feed`, the runs are those of the bundle that `options.runs` selects; with one, those it yields,
    each imported as soon as it arrives (`options.runs` and `dry_run` do not apply then)."""
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    bundle = Bundle(options.bundle_dir)  # BundleError (an NmigError) for not-a-bundle or a newer format
    project = resolve_project(options.project, bundle)
    result = ImportResult(project=project)
    if feed is None:
        entities = select_runs(bundle.entities("run"), options.runs)
        if options.dry_run:
            return _dry_run(bundle, entities, result)
        feed = WholeBundle([e.sys_id for e in entities])
    elif options.runs or options.dry_run:
        raise ValueError("a feed chooses the runs itself: no --runs selection or dry run with it")

    api_token = require_api_token(options.api_token)
    from nmig.loopback import prepare_client_env

    prepare_client_env(api_token)
    nclient.quiet_client_logs()

    from nmig.importer import target

    source = bundle.info.get("source") if isinstance(bundle.info.get("source"), dict) else {}
    project_outcome = target.ensure_project(project, api_token, source, options.create_project)
    if project_outcome.key_dropped:
        print(f"nmig import: {project_outcome.message}", file=sys.stderr)  # said even under --quiet
        result.events.append(Event("", "", "project_key_taken", project_outcome.message))
    else:
        _say(options, project_outcome.message)

    state_path = options.state_path or default_state_path(options.bundle_dir, project)
    with StateLock(state_path):
        _Importer(options, bundle, result, api_token, project_outcome, state_path, progress).run(feed, started_at)
    return result


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
        state_path: Path,
        progress: Callable[[int], None] | None,
    ) -> None:
        from nmig.importer import target

        self.options = options
        self.bundle = bundle
        self.result = result
        self.project = result.project
        self.api_token = api_token
        self.project_outcome = project_outcome
        self.state = ImportState(state_path, self.project, options.bundle_dir)
        result.report_path = report.report_path_for(state_path)
        self.earlier_report = report.read_report(result.report_path, self.project)
        self.existing = set() if project_outcome.created else target.existing_run_ids(self.project, api_token)
        # The client's operation logs and decompressed files live next to the state file. What an interrupted
        # import left there is stale (a resumed run asks the target what it holds), so it is cleared first.
        self.scratch = state_path.parent / f".{state_path.name}.work"
        self.local = threading.local()
        self.pools: list[nclient.ClientPool] = []
        self.pools_lock = threading.Lock()
        self.bar: Any = None
        self.bar_lock = threading.Lock()
        self.progress = progress
        self.queued = 0  # runs handed to the workers so far

    # ---- the schedule ------------------------------------------------------------------------------------

    def run(self, feed: RunFeed, started_at: str) -> None:
        result = self.result
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        if not self.options.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="pt", unit_scale=True, desc="Importing", file=sys.stderr)
            if self.progress is None:
                self.progress = self._advance
        workers = max(1, self.options.max_workers)
        seen: set[str] = set()
        owners: dict[str, str] = {}
        todo: deque[tuple[RunPlan, EntityBundle]] = deque()
        finished = False
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nmig-import") as pool:
                futures: dict[Future[RunOutcome], RunPlan] = {}
                while True:
                    if not finished:
                        sys_ids, finished = feed.poll()
                        fresh = [sys_id for sys_id in dict.fromkeys(sys_ids) if sys_id not in seen]
                        seen.update(fresh)
                        todo.extend(self._arrived(fresh, owners))
                    while todo and len(futures) < workers:
                        plan, entity = todo.popleft()
                        futures[pool.submit(self._import_one, plan, entity)] = plan
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
        finally:
            if self.bar is not None:
                self.bar.close()
            for client_pool in self.pools:
                client_pool.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            _note_unimported(self.bundle, result)
            assert result.report_path is not None
            report.write_report(
                result.report_path,
                project=result.project,
                project_note=self.project_outcome.message,
                started_at=started_at,
                runs={
                    "imported": result.imported,
                    "already_imported": result.already,
                    "failed": result.failed,
                    "refused": result.refused,
                    "not_imported": result.not_imported,
                },
                targets={plan.sys_id: plan.target_run_id for plan in result.plans},
                events=result.events,
                earlier=self.earlier_report,
            )

    def _arrived(self, sys_ids: list[str], owners: dict[str, str]) -> list[tuple[RunPlan, EntityBundle]]:
        """Plan runs that just arrived; those imported by an earlier invocation are skipped with their items."""
        entities = []
        for sys_id in sys_ids:
            try:
                entities.append(self.bundle.entity("run", sys_id))
            except BundleError as exc:
                self.result.refused.append(sys_id)
                self.result.events.append(Event(sys_id, "", "refused", str(exc)))
        todo = []
        for plan, entity in _plan_runs(entities, self.result, owners):
            if self.state.status(plan.sys_id) == IMPORTED:
                self.result.already.append(plan.sys_id)
                self.result.events.extend(_items_of_imported_run(plan, entity, self.earlier_report))
                self.result.events.append(
                    Event(plan.sys_id, "", "already_imported", "imported by an earlier run of nmig import; skipped")
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

    def _advance(self, points: int) -> None:
        with self.bar_lock:
            self.bar.update(points)

    def _show_runs(self) -> None:
        if self.bar is not None:
            done = len(self.result.imported) + len(self.result.failed) + len(self.result.refused)
            with self.bar_lock:
                self.bar.set_postfix_str(f"{done}/{self.queued} runs")

    # ---- one run (in a worker thread) --------------------------------------------------------------------

    def _clients(self) -> nclient.ClientPool:
        pool = getattr(self.local, "pool", None)
        if pool is None:
            pool = self.local.pool = nclient.ClientPool(self.api_token)
            with self.pools_lock:
                self.pools.append(pool)
        return pool

    def _import_one(self, plan: RunPlan, entity: EntityBundle) -> RunOutcome:
        from nmig.importer import target

        project, api_token = self.project, self.api_token
        problems = entity.verify()
        if problems:
            outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
            outcome.events.append(Event(plan.sys_id, "", "refused", "bundle damaged: " + "; ".join(problems[:5])))
            return outcome
        earlier = self.state.status(plan.sys_id)
        resume: ResumePoint | None = None
        if earlier in (STARTED, FAILED) or plan.target_run_id in self.existing:
            resume = target.resume_point(project, api_token, plan)
        self.state.mark(plan.sys_id, STARTED, plan.target_run_id)
        sink = nclient.RunSink(
            project=project,
            api_token=api_token,
            run_id=plan.target_run_id,
            experiment_name=plan.experiment_name,
            creation_time=plan.creation_time,
            log_directory=self.scratch,
            clients=self._clients(),
        )
        outcome = RunReplayer(
            plan,
            entity,
            sink,
            resume,
            on_points=self.progress or (lambda n: None),
            not_as_sent=lambda expected: target.items_not_as_sent(project, api_token, plan.target_run_id, expected),
            confirm_last_steps=lambda paths: target.last_steps(project, api_token, plan, paths),
        ).replay()
        if resume is not None:
            outcome.events.append(
                Event(plan.sys_id, "", "resumed", f"resumed: the target already held {len(resume.last_micros)} series in part or whole")
            )
        return outcome


def _record(outcome: RunOutcome, state: ImportState, result: ImportResult) -> None:
    result.events.extend(outcome.events)
    earlier = (state.runs.get(outcome.sys_id).earlier_errors if state.runs.get(outcome.sys_id) else None) or []
    for item in earlier:
        result.events.append(Event(outcome.sys_id, item.get("path", ""), "earlier_attempt_failed", item.get("detail", "")))
    refused = any(e.case == "refused" and e.run == outcome.sys_id and not e.path for e in outcome.events)
    if outcome.imported:
        result.imported.append(outcome.sys_id)
        state.mark(outcome.sys_id, IMPORTED, outcome.target_run_id)
    elif refused:
        result.refused.append(outcome.sys_id)
    else:
        result.failed.append(outcome.sys_id)
        errors = [{"path": e.path, "detail": e.detail} for e in outcome.events if e.case == "failed"]
        state.mark(outcome.sys_id, FAILED, outcome.target_run_id, errors)
