"""Which entities of a bundle an import takes in, and as what: each arriving run planned, the runs that cannot
be imported refused with their reason, and the entities 3.x does not take listed. Shared by the dry run and
the scheduler, so both refuse the same runs for the same reasons."""

from __future__ import annotations

from nmig.importer.experiments import DEFAULT_MODE
from nmig.importer.plan import PlanRefused, RunPlan, model_id_of, models_with_their_model, plan_run
from nmig.importer.report import Event
from nmig.importer.result import ImportResult
from nmig.importer.rules import NOT_IMPORTED_KINDS
from nmig.schema import Bundle, EntityBundle, refusal, validate_entity


class RunIds:
    """Which legacy run holds which 3.x run id, across the runs planned so far (carried over between calls
    as runs arrive). A custom_run_id equal to another run's sys/id never gets that id (plan.target_run_id
    suffixes it); both runs are reported once both were planned."""

    def __init__(self, result: ImportResult) -> None:
        self.result = result
        self.owners: dict[str, str] = {}  # 3.x run id -> legacy id
        self.claims: dict[str, RunPlan] = {}  # legacy id -> the run whose custom_run_id equals it
        self.planned: dict[str, RunPlan] = {}  # legacy id -> its plan

    def take(self, plan: RunPlan) -> str:
        """The legacy id of the run that holds plan's 3.x id (plan's own unless another run took it first)."""
        self.planned[plan.sys_id] = plan
        if plan.claims_id_of is not None:
            self.claims[plan.claims_id_of] = plan
            if plan.claims_id_of in self.planned:
                self._note_shared(self.planned[plan.claims_id_of], plan)
        elif plan.sys_id in self.claims:
            self._note_shared(plan, self.claims[plan.sys_id])
        return self.owners.setdefault(plan.target_run_id, plan.sys_id)

    def _note_shared(self, holder: RunPlan, claimant: RunPlan) -> None:
        self.result.events.append(
            Event(holder.sys_id, "", "run_id_shared",
                  f"run {claimant.sys_id}'s custom_run_id is this run's sys/id {holder.sys_id!r}: this run keeps "
                  f"{holder.target_run_id!r}, run {claimant.sys_id} is {claimant.target_run_id!r}")
        )


def plan_runs(
    entities: list[EntityBundle],
    result: ImportResult,
    owners: RunIds,
    experiments: str = DEFAULT_MODE,
    models: dict[str, RunPlan] | None = None,
) -> list[tuple[RunPlan, EntityBundle]]:
    """Plan each run; refuse those that cannot be planned, and those whose 3.x run id another run already took
    (custom ids made valid by the limits rules may meet): the first keeps it, the others are not merged into it.
    With `models` (--models-as-runs: {model id: its plan}, filled as models are planned), the entities may be
    models and model versions too (plan_models)."""
    planned = []
    for entity in entities:
        try:
            if models is None:
                plan = plan_run(entity, experiments)
            else:
                plan = plan_run(entity, experiments, True, models.get(model_id_of(entity)))
                if entity.kind == "model":
                    models[entity.sys_id] = plan
        except PlanRefused as exc:
            result.refused.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "refused", str(exc)))
            continue
        first = owners.take(plan)
        if first != plan.sys_id:
            result.refused.append(plan.sys_id)
            result.events.append(
                Event(plan.sys_id, "", "refused", f"its 3.x run id {plan.target_run_id!r} is already the target of run {first}")
            )
            continue
        result.plans.append(plan)
        planned.append((plan, entity))
    return planned


def plan_models(bundle: Bundle, result: ImportResult, owners: RunIds, experiments: str) -> list[tuple[RunPlan, EntityBundle]]:
    """`--models-as-runs`: every model, then every model version, planned as runs (plan_runs)."""
    return plan_runs([entity for entity, _ in models_with_their_model(bundle)], result, owners, experiments, {})


def damaged(plan: RunPlan, entity: EntityBundle, half_written: bool = False) -> Event | None:
    """The refusal of a run whose bundle fails the whole-run validation (nmig.schema.validate_entity, the one
    `inspect --check` runs), or None when it passes. `half_written`: 3.x may already hold part of the run."""
    problems = validate_entity(entity)
    if not problems:
        return None
    detail = refusal(problems)
    if half_written:
        detail += (
            f"; 3.x already holds a partly written run {plan.target_run_id!r} from an earlier nmig import "
            "(one that did not validate a run before writing it): delete it there, or fix the bundle"
        )
    return Event(plan.sys_id, "", "refused", detail)


def note_unimported(bundle: Bundle, result: ImportResult, models_as_runs: bool = False) -> None:
    """Models and model versions (not imported by design, unless --models-as-runs) and stray entries of the
    runs folder."""
    for kind in () if models_as_runs else NOT_IMPORTED_KINDS:
        for entity in bundle.entities(kind):
            result.not_imported.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "not_imported", f"{kind}: {NOT_IMPORTED_KINDS[kind]}"))
    for stray in bundle.strays("run"):
        result.refused.append(stray)  # counted as the report lists it, so the exit status says so too
        result.events.append(Event(stray, "", "refused", "not a run folder (unsafe name or not a folder)"))
