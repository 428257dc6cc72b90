"""`nmig import`: plan every selected run of a bundle, then replay them into a 3.x project, exactly once.

Concurrency: one process; `max_workers` threads each import one run at a time, with the client's sync
threads for that run beside it (see client.py); nothing is spawned per run. Measured on 2 shared cores with
the emulator on the same machine (300 small runs, benchmarks/bench_import.py --case small --workers N):
1 worker 8.4 runs/s, 2: 15.3, 4: 18.1, 8: 11.9 (GIL and the service's core saturate), hence the default 4.
A single long series uses one worker: building requests overlaps with the service ingesting the last one.

Files written next to the state file (default: inside the bundle, `import-state.<ws>__<project>.json`):
* the state file (state.py): per legacy run, started / imported / failed, its 3.x run id and attempts;
* the import report, `import-report.<ws>__<project>.json` (or `<state stem>.report.json`), read by
  `nmig verify`: {"format": "nmig-import-report", "format_version": "1.0", "project", "project_note",
  "started_at", "finished_at", "runs": {"imported", "already_imported", "failed", "refused", "not_imported":
  [legacy ids]}, "targets": {legacy id: 3.x run id}, "items": [{"run", "path", "case", "detail"}]}; items list
  every adjusted, skipped, not written and failed item with its legacy path (cases: see plan.py, limits.py,
  replay.py); runs an invocation did not touch keep what an earlier report said about them;
* a `.<state name>.work/` scratch folder (the client's operation logs, decompressed files), removed at the end.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.errors import NmigError, PartialFailure
from nmig.importer import client as nclient
from nmig.importer.plan import Event, PlanRefused, RunPlan, plan_run
from nmig.importer.replay import ResumePoint, RunOutcome, RunReplayer
from nmig.importer.rules import NOT_IMPORTED_KINDS
from nmig.importer.state import (
    FAILED,
    IMPORTED,
    STARTED,
    ImportState,
    StateLock,
    default_state_path,
    report_path_for,
    write_json_atomically,
)
from nmig.schema import Bundle, EntityBundle
from nmig.secrets import redact

REPORT_FORMAT = "nmig-import-report"


@dataclass
class ImportOptions:
    bundle_dir: Path
    project: str | None  # "workspace/project", or "workspace" for the legacy project's name there
    api_token: str | None
    runs: list[str] = field(default_factory=list)
    max_workers: int = 4
    dry_run: bool = False
    create_project: bool = True
    state_path: Path | None = None
    quiet: bool = False


@dataclass
class ImportResult:
    project: str
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    report_path: Path | None = None
    plans: list[RunPlan] = field(default_factory=list)


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


def _select(entities: list[EntityBundle], patterns: list[str]) -> list[EntityBundle]:
    if not patterns:
        return entities
    chosen = []
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise NmigError(f"--runs {pattern!r} is neither a run id nor a valid regular expression: {exc}") from None
    for entity in entities:
        ids = {entity.sys_id, str(entity.custom_run_id or "")}
        if any(p in ids for p in patterns) or any(c.fullmatch(i) for c in compiled for i in ids if i):
            chosen.append(entity)
    if not chosen:
        raise NmigError(f"--runs {' '.join(patterns)} matches no run in the bundle")
    return chosen


def _refuse_shared_targets(result: ImportResult) -> None:
    """Two legacy runs may end on one 3.x run id (custom ids made valid by the limits rules): the first keeps
    it, the others are refused with the reason instead of being merged into one run."""
    owner: dict[str, str] = {}
    for plan in list(result.plans):
        first = owner.setdefault(plan.target_run_id, plan.sys_id)
        if first != plan.sys_id:
            result.plans.remove(plan)
            result.refused.append(plan.sys_id)
            result.events.append(
                Event(plan.sys_id, "", "refused", f"its 3.x run id {plan.target_run_id!r} is already the target of run {first}")
            )


def _check_token(api_token: str | None) -> str:
    from nmig.secrets import api_address

    if not api_token or not api_token.strip():
        raise NmigError("no API token: pass --api-token or set NEPTUNE_API_TOKEN")
    if api_address(api_token) is None:
        raise NmigError("the API token is malformed (not a Neptune API token)")
    return api_token.strip()


def _print_plan(plans: list[RunPlan], events: list[Event], project: str) -> None:
    print(f"Dry run: nothing is written. Target project: {project}")
    for plan in plans:
        summary = plan.summary()
        print(
            f"run {plan.sys_id} -> {plan.target_run_id}"
            + (f" (name {plan.experiment_name!r})" if plan.experiment_name else "")
            + f": {summary['configs']} configs, {summary['tags']} tags, {summary['group_tags']} group tags, "
            f"{summary['files']} files, {len(plan.series)} series"
        )
        for legacy, target in summary["remapped"].items():
            print(f"    {legacy} -> {target}")
        for series in plan.series:
            print(f"    series {series.legacy_path} -> {series.target} ({series.kind}, {series.points} points)")
    if events:
        print("Skipped, adjusted or not imported:")
        for event in events:
            print(f"    {event.run} {event.path or '-'}: {event.case}: {event.detail}")


def _write_report(path: Path, project: str, result: ImportResult, started_at: str, project_note: str) -> None:
    doc = {
        "format": REPORT_FORMAT,
        "format_version": "1.0",
        "project": project,
        "project_note": project_note,
        "started_at": started_at,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "runs": {
            "imported": result.imported,
            "already_imported": result.already,
            "failed": result.failed,
            "refused": result.refused,
            "not_imported": result.not_imported,
        },
        "targets": {plan.sys_id: plan.target_run_id for plan in result.plans},
        # client messages are shown as they come, minus anything shaped like a token
        "items": [{**e.to_json(), "detail": redact(e.detail)} for e in result.events],
    }
    _carry_over(path, doc)
    write_json_atomically(path, doc)


def _carry_over(path: Path, doc: dict[str, Any]) -> None:
    """Keep what an earlier report says about runs this invocation did not touch (e.g. another --runs
    selection), so the report always covers every run of the bundle that nmig import has seen."""
    import json

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(old, dict) or old.get("format") != REPORT_FORMAT or old.get("project") != doc["project"]:
        return
    touched = {run for runs in doc["runs"].values() for run in runs} | set(doc["targets"])
    for status, runs in (old.get("runs") or {}).items():
        if status in doc["runs"] and isinstance(runs, list):
            doc["runs"][status] += [r for r in runs if r not in touched and r not in doc["runs"][status]]
    for run, target_id in (old.get("targets") or {}).items():
        doc["targets"].setdefault(run, target_id)
    doc["items"] += [i for i in old.get("items") or [] if isinstance(i, dict) and i.get("run") not in touched and i.get("run")]


def run_import(options: ImportOptions, progress: Callable[[int], None] | None = None) -> ImportResult:
    """Everything `nmig import` does. Raises NmigError for bad input and PartialFailure when some runs
    failed (the report says which and why)."""
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    bundle = Bundle(options.bundle_dir)  # BundleError (an NmigError) for not-a-bundle or a newer format
    project = resolve_project(options.project, bundle)
    result = ImportResult(project=project)

    for kind in NOT_IMPORTED_KINDS:
        for entity in bundle.entities(kind):
            result.not_imported.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "not_imported", f"{kind}: {NOT_IMPORTED_KINDS[kind]}"))
    for stray in bundle.strays("run"):
        result.events.append(Event(stray, "", "refused", "not a run folder (unsafe name or not a folder)"))

    entities = _select(bundle.entities("run"), options.runs)
    for entity in entities:
        try:
            plan = plan_run(entity)
        except PlanRefused as exc:
            result.refused.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "refused", str(exc)))
            continue
        result.plans.append(plan)
    _refuse_shared_targets(result)

    if options.dry_run:
        from nmig.importer.replay import scan_adjustments

        by_sys_id = {e.sys_id: e for e in entities}
        for plan in list(result.plans):
            problems = by_sys_id[plan.sys_id].verify()
            if problems:  # what the import would refuse, found the same way
                result.plans.remove(plan)
                result.refused.append(plan.sys_id)
                result.events.append(Event(plan.sys_id, "", "refused", "bundle damaged: " + "; ".join(problems[:5])))
                continue
            result.events.extend(plan.events)
            result.events.extend(scan_adjustments(plan, by_sys_id[plan.sys_id]))
        _print_plan(result.plans, result.events, project)
        return result

    api_token = _check_token(options.api_token)
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
        return _import_locked(options, entities, result, project, api_token, project_outcome, state_path, progress, started_at)


def _import_locked(
    options: ImportOptions,
    entities: list[EntityBundle],
    result: ImportResult,
    project: str,
    api_token: str,
    project_outcome: Any,
    state_path: Path,
    progress: Callable[[int], None] | None,
    started_at: str,
) -> ImportResult:
    from nmig.importer import target

    state = ImportState(state_path, project, options.bundle_dir)
    result.report_path = report_path_for(state_path)
    existing = set() if project_outcome.created else target.existing_run_ids(project, api_token)

    todo: list[tuple[RunPlan, EntityBundle]] = []
    by_id = {e.sys_id: e for e in entities}
    for plan in result.plans:
        if state.status(plan.sys_id) == IMPORTED:
            result.already.append(plan.sys_id)
            continue
        todo.append((plan, by_id[plan.sys_id]))

    # The client's operation logs and decompressed files live next to the state file. What an interrupted
    # import left there is stale (a resumed run asks the target what it holds), so it is cleared first.
    scratch = state_path.parent / f".{state_path.name}.work"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    local = threading.local()
    pools: list[nclient.ClientPool] = []
    pools_lock = threading.Lock()

    def clients() -> nclient.ClientPool:
        pool = getattr(local, "pool", None)
        if pool is None:
            pool = local.pool = nclient.ClientPool(api_token)
            with pools_lock:
                pools.append(pool)
        return pool

    def import_one(plan: RunPlan, entity: EntityBundle) -> RunOutcome:
        problems = entity.verify()
        if problems:
            outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
            outcome.events.append(Event(plan.sys_id, "", "refused", "bundle damaged: " + "; ".join(problems[:5])))
            return outcome
        earlier = state.status(plan.sys_id)
        resume: ResumePoint | None = None
        if earlier in (STARTED, FAILED) or plan.target_run_id in existing:
            resume = target.resume_point(project, api_token, plan)
        state.mark(plan.sys_id, STARTED, plan.target_run_id)
        sink = nclient.RunSink(
            project=project,
            api_token=api_token,
            run_id=plan.target_run_id,
            experiment_name=plan.experiment_name,
            creation_time=plan.creation_time,
            log_directory=scratch,
            clients=clients(),
        )
        outcome = RunReplayer(
            plan,
            entity,
            sink,
            resume,
            on_points=progress or (lambda n: None),
            narrow_configs=lambda expected: target.configs_not_as_sent(project, api_token, plan.target_run_id, expected),
            confirm_last_steps=lambda paths: target.last_steps(project, api_token, plan, paths),
        ).replay()
        if resume is not None:
            outcome.events.append(
                Event(plan.sys_id, "", "resumed", f"resumed: the target already held {len(resume.last_micros)} series in part or whole")
            )
        return outcome

    bar = None
    if not options.quiet:
        from tqdm import tqdm

        total_points = sum(item.points for plan, _ in todo for item in plan.series)
        bar = tqdm(total=total_points, unit="pt", unit_scale=True, desc=f"Importing {len(todo)} run(s)", file=sys.stderr)
        bar_lock = threading.Lock()

        def advance(points: int) -> None:
            with bar_lock:
                bar.update(points)

        progress = progress or advance
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.max_workers), thread_name_prefix="nmig-import") as pool:
            futures: dict[Future[RunOutcome], RunPlan] = {}
            queue = list(todo)
            while queue or futures:
                while queue and len(futures) < max(1, options.max_workers):
                    plan, entity = queue.pop(0)
                    futures[pool.submit(import_one, plan, entity)] = plan
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in done:
                    plan = futures.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # e.g. the target unreadable for a resume, a client failure: this run only
                        outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
                        outcome.events.append(Event(plan.sys_id, "", "failed", f"{type(exc).__name__}: {exc}"[:500]))
                    _record(outcome, state, result)
                    if bar is not None:
                        with bar_lock:
                            bar.set_postfix_str(f"{len(result.imported) + len(result.failed) + len(result.refused)}/{len(todo)} runs")
    finally:
        if bar is not None:
            bar.close()
        for client_pool in pools:
            client_pool.close()
        shutil.rmtree(scratch, ignore_errors=True)
        for plan in result.plans:
            if plan.sys_id in result.already:
                result.events.append(Event(plan.sys_id, "", "already_imported", "imported by an earlier run of nmig import; skipped"))
        _write_report(result.report_path, project, result, started_at, project_outcome.message)

    print(  # the final line, also under --quiet
        f"nmig import: {len(result.imported)} run(s) imported into {project}; {len(result.already)} already imported; "
        f"{len(result.failed)} failed; {len(result.refused)} refused; {len(result.not_imported)} model entities not imported. "
        f"Report: {result.report_path}",
        file=sys.stderr,
    )
    if result.failed or result.refused:
        raise PartialFailure(
            f"{len(result.failed) + len(result.refused)} run(s) not imported ({', '.join((result.failed + result.refused)[:10])}); "
            f"see {result.report_path}; re-run the same command to retry"
        )
    return result


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


def default_report_path(bundle_dir: Path, project: str, state_path: Path | None = None) -> Path:
    """Where `nmig import` writes its report (for `nmig verify`)."""
    return report_path_for(state_path or default_state_path(bundle_dir, project))
