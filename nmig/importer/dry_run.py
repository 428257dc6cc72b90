"""`nmig import --dry-run`: every selected run planned and checked as the import would, nothing written."""

from __future__ import annotations

from nmig.importer.intake import RunIds, damaged, note_unimported, plan_models, plan_runs
from nmig.importer.replay import scan_adjustments
from nmig.importer.result import ImportResult
from nmig.schema import Bundle, EntityBundle


def dry_run(
    bundle: Bundle, entities: list[EntityBundle], result: ImportResult, experiments: str, models_as_runs: bool = False
) -> ImportResult:
    """`result` filled with the plans and with what the import would adjust, skip or refuse."""
    owners = RunIds(result)
    planned = plan_runs(entities, result, owners, experiments)
    if models_as_runs:
        planned += plan_models(bundle, result, owners, experiments)
    for plan, entity in planned:
        refusal = damaged(plan, entity)
        if refusal is not None:  # what the import would refuse, found the same way
            result.plans.remove(plan)
            result.refused.append(plan.sys_id)
            result.events.append(refusal)
            continue
        result.events.extend(plan.events)
        result.events.extend(scan_adjustments(plan, entity))
    note_unimported(bundle, result, models_as_runs)
    return result


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
