"""Importing one planned run, in one of the scheduler's worker threads: check its bundle, ask the target where
an interrupted run stands, mark it started, replay it through a RunSink of this thread's client pool."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from nmig.importer import client as nclient
from nmig.importer import target
from nmig.importer.experiments import heads, shared_names
from nmig.importer.intake import damaged
from nmig.importer.plan import RunPlan, experiment_member, plan_run
from nmig.importer.replay import PROCESSING_TIMEOUT_S, ResumePoint, RunOutcome, RunReplayer
from nmig.importer.report import Event
from nmig.importer.state import FAILED, IMPORTED, STARTED, ImportState
from nmig.importer.sync import read_record, synced_folder
from nmig.schema import Bundle, EntityBundle


class RunWorker:
    """What every run of one invocation shares: the project, the token, the state file, the scratch folder
    and one client pool per worker thread (closed by `close`)."""

    def __init__(
        self,
        project: str,
        api_token: str,
        state: ImportState,
        scratch: Path,
        existing: set[str],
        on_points: Callable[[int], None] | None,
    ) -> None:
        self.project = project
        self.api_token = api_token
        self.state = state
        self.scratch = scratch
        self.existing = existing  # 3.x run ids the project held before this invocation
        self.on_points = on_points
        self._local = threading.local()
        self._pools: list[nclient.ClientPool] = []
        self._pools_lock = threading.Lock()

    def _clients(self) -> nclient.ClientPool:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = nclient.ClientPool(self.api_token)
            with self._pools_lock:
                self._pools.append(pool)
        return pool

    def close(self) -> None:
        for client_pool in self._pools:
            client_pool.close()

    def assert_heads(self, bundle: Bundle, plans: list[RunPlan], experiments: str) -> list[Event]:
        """Make the head of every experiment the runs of `plans` joined the run with the latest legacy creation
        time (ties by id) among the runs of the bundle imported so far, whatever order they were imported in:
        the head run is created again with the name, which moves the name to it (nmig.importer.experiments).
        Only names more than one run of the bundle has need it."""
        touched = {plan.experiment_name for plan in plans if plan.experiment_name}
        if not touched:
            return []
        members = [m for m in (experiment_member(e, experiments) for e in bundle.entities("run")) if m and m[0] in touched]
        shared = shared_names(members)
        # in the target: imported (or failed after its creation) by this or an earlier invocation, whatever
        # state file that used
        imported = [m for m in members if m[0] in shared
                    and (self.state.status(m[2]) in (IMPORTED, FAILED) or m[3] in self.existing)]
        by_id = {plan.sys_id: plan for plan in plans}
        events = []
        for name, head_id in sorted(heads(imported).items()):
            plan = by_id.get(head_id) or plan_run(bundle.entity("run", head_id), experiments)
            sink = nclient.RunSink(
                project=self.project, api_token=self.api_token, run_id=plan.target_run_id, experiment_name=name,
                creation_time=plan.creation_time, log_directory=self.scratch, clients=self._clients(),
            )
            try:
                sink.start_sync()
                done = sink.wait_for_processing(PROCESSING_TIMEOUT_S, files_too=False)
                errors = [e for e in sink.drain_errors() if e.kind == "error"]
            finally:
                sink.close()
            if done and not errors:
                events.append(Event(head_id, "", "experiment_head", f"head of experiment {name!r} (latest legacy creation time)"))
            else:
                why = errors[0].message.splitlines()[0][:200] if errors else "the service did not confirm it in time"
                events.append(Event(head_id, "", "failed", f"could not make it the head of experiment {name!r}: {why}"))
        return events

    def import_project_metadata(self, plan: RunPlan) -> list[Event]:
        """Write the project-metadata run (plan.plan_project): configs only, overwritten on every import."""
        sink = nclient.RunSink(
            project=self.project, api_token=self.api_token, run_id=plan.target_run_id, experiment_name=None,
            creation_time=plan.creation_time, log_directory=self.scratch, clients=self._clients(),
        )
        try:
            sink.log_configs(dict(plan.configs))
            sink.start_sync()
            done = sink.wait_for_processing(PROCESSING_TIMEOUT_S)
            errors = [e for e in sink.drain_errors() if e.kind == "error"]
        finally:
            sink.close()
        events = list(plan.events)
        if done and not errors:
            events.append(Event(plan.sys_id, "", "project_metadata",
                                f"{len(plan.configs)} config(s) in run {plan.target_run_id!r}"))
        else:
            why = errors[0].message.splitlines()[0][:200] if errors else "the service did not confirm it in time"
            events.append(Event(plan.sys_id, "", "failed", f"project-metadata run {plan.target_run_id!r}: {why}"))
        return events

    def import_run(self, plan: RunPlan, entity: EntityBundle) -> RunOutcome:
        project, api_token = self.project, self.api_token
        # The whole run is validated before anything of it is written: a run refused here has nothing in 3.x.
        earlier = self.state.status(plan.sys_id)
        refusal = damaged(plan, entity, half_written=earlier in (STARTED, FAILED) or plan.target_run_id in self.existing)
        if refusal is not None:
            outcome = RunOutcome(plan.sys_id, plan.target_run_id, imported=False, events=list(plan.events))
            outcome.events.append(refusal)
            return outcome
        resume: ResumePoint | None = None
        # a re-sync (sync.py): the run was imported whole before, from another export of it
        resync = earlier == IMPORTED or self.state.version(plan.sys_id) is not None
        previous = read_record(synced_folder(self.state.home(plan.sys_id)), plan.sys_id) if resync else None
        if earlier is not None or plan.target_run_id in self.existing:
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
            on_points=self.on_points or (lambda n: None),
            not_as_sent=lambda expected: target.items_not_as_sent(project, api_token, plan.target_run_id, expected),
            confirm_last_steps=lambda paths: target.last_steps(project, api_token, plan, paths),
            previous=previous,
        ).replay()
        if resync:
            held = f"{len(resume.last_micros)} series" if resume is not None else "nothing"
            outcome.events.append(Event(
                plan.sys_id, "", "re_synced",
                f"imported before from an older export of the run: brought up to date (the target held {held}; "
                f"only points after each series' last step sent{'' if previous else '; no record of the last import, so earlier points were not compared'})",
            ))
        elif resume is not None:
            outcome.events.append(
                Event(plan.sys_id, "", "resumed", f"resumed: the target already held {len(resume.last_micros)} series in part or whole")
            )
        return outcome
