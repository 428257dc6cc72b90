"""Which entities of a bundle an import takes in, and as what: each arriving run planned, the runs that cannot
be imported refused with their reason, and the entities 3.x does not take listed. Shared by the dry run and
the scheduler, so both refuse the same runs for the same reasons."""

from __future__ import annotations

from nmig.importer.plan import PlanRefused, RunPlan, plan_run
from nmig.importer.report import Event
from nmig.importer.result import ImportResult
from nmig.importer.rules import NOT_IMPORTED_KINDS
from nmig.schema import Bundle, EntityBundle, refusal, validate_entity


def plan_runs(entities: list[EntityBundle], result: ImportResult, owners: dict[str, str]) -> list[tuple[RunPlan, EntityBundle]]:
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


def note_unimported(bundle: Bundle, result: ImportResult) -> None:
    """Models and model versions (not imported by design) and stray entries of the runs folder."""
    for kind in NOT_IMPORTED_KINDS:
        for entity in bundle.entities(kind):
            result.not_imported.append(entity.sys_id)
            result.events.append(Event(entity.sys_id, "", "not_imported", f"{kind}: {NOT_IMPORTED_KINDS[kind]}"))
    for stray in bundle.strays("run"):
        result.refused.append(stray)  # counted as the report lists it, so the exit status says so too
        result.events.append(Event(stray, "", "refused", "not a run folder (unsafe name or not a folder)"))
