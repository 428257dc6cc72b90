"""Importing one planned run, in one of the scheduler's worker threads: check its bundle, ask the target where
an interrupted run stands, mark it started, replay it through a RunSink of this thread's client pool."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from nmig.importer import client as nclient
from nmig.importer import target
from nmig.importer.intake import damaged
from nmig.importer.plan import RunPlan
from nmig.importer.replay import ResumePoint, RunOutcome, RunReplayer
from nmig.importer.report import Event
from nmig.importer.state import FAILED, STARTED, ImportState
from nmig.schema import EntityBundle


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
            on_points=self.on_points or (lambda n: None),
            not_as_sent=lambda expected: target.items_not_as_sent(project, api_token, plan.target_run_id, expected),
            confirm_last_steps=lambda paths: target.last_steps(project, api_token, plan, paths),
        ).replay()
        if resume is not None:
            outcome.events.append(
                Event(plan.sys_id, "", "resumed", f"resumed: the target already held {len(resume.last_micros)} series in part or whole")
            )
        return outcome
