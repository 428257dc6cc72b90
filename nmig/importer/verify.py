"""`nmig verify`: read a 3.x project back through neptune-query and compare it with the bundle it came from.

What each run should hold in 3.x comes from the importer's own `plan_run` (configs, tags, name, creation
time, files, which series go where) and, for series points, `limits.SeriesFilter` (verify_series.py): the
remapping lives in one place and verify cannot disagree with import about it. Items the import report lists
under a case of the kind "adjustment" (report.CASES: shortened paths, dropped colliding steps, ...) are
therefore expected; they are shown next to the run, not counted as differences.

A run matches when every expected item is there with the same type and value, and nothing unexpected is in
the run outside `sys/` (which the service owns).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.errors import NmigError, PartialFailure
from nmig.importer.experiments import heads, shared_names
from nmig.importer.partition import shard_runs
from nmig.importer.plan import (
    PlanRefused,
    RunPlan,
    experiment_member,
    model_id_of,
    models_with_their_model,
    plan_project,
    plan_run,
    select_runs,
)
from nmig.importer.project import parse_project_map, resolve_project
from nmig.importer.report import default_report_path, read_items
from nmig.importer.state import StateFile, write_json_atomically
from nmig.importer.target import require_api_token
from nmig.importer.verify_series import (
    Difference,
    SeriesChecker,
    TargetSeriesReader,
    file_digests,
    shown_value,
)
from nmig.importer.wire import nearest_ms
from nmig.schema import Bundle, EntityBundle
from nmig.sharding import Shard, tagged

REPORT_FORMAT = "nmig-verify-report"


@dataclass
class VerifyOptions:
    bundle_dir: Path | str  # a folder, or a URL on object storage (nmig.schema.store)
    project: str | None
    api_token: str | None
    runs: Sequence[str] = ()  # --runs patterns (see plan.select_runs)
    sample: int | None = None
    report: Path | None = None
    import_report: Path | str | None = None  # a path or a URL (state.StateFile.at); default: in the bundle
    quiet: bool = False
    experiments: str = "by-name"  # as given to `nmig import --experiments`
    models_as_runs: bool = False  # as given to `nmig import --models-as-runs`
    max_workers: int = 8  # runs checked at once
    storage_options: dict[str, Any] | None = None  # fsspec's, for a bundle_dir URL; never printed
    project_map: Sequence[str] = ()  # as given to `nmig import --project-map`
    shard: Shard | None = None  # --shard I/N: only the runs `nmig import --shard I/N` takes (partition.py)


@dataclass
class RunCheck:
    sys_id: str
    target_run_id: str | None
    status: str = "ok"  # ok | differs | missing | not_importable
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    adjusted: list[dict[str, str]] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.sys_id,
            "target_run_id": self.target_run_id,
            "status": self.status,
            "checked": self.checked,
            "differences": [d.to_json() for d in self.differences],
            "adjusted_by_import": self.adjusted,
            "note": self.note,
        }


@dataclass
class VerifyResult:
    project: str
    runs: list[RunCheck] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)  # models and model versions, by design
    expected_totals: dict[str, int] = field(default_factory=lambda: {"runs": 0, "points": 0, "files": 0, "bytes": 0})
    found_totals: dict[str, int] = field(default_factory=lambda: {"runs": 0, "points": 0, "files": 0, "bytes": 0})
    sample: int | None = None
    report_path: Path | None = None  # where --report was written (tagged with the shard under --shard)

    @property
    def ok(self) -> bool:
        return all(run.status == "ok" for run in self.runs)

    @property
    def difference_count(self) -> int:
        return sum(len(run.differences) for run in self.runs)

    def raise_for_differences(self, report: Path | None = None) -> None:
        """PartialFailure (exit 1) unless everything matches."""
        if not self.ok:
            raise PartialFailure(
                f"verify found {self.difference_count} difference(s) in {sum(r.status != 'ok' for r in self.runs)} run(s)"
                + (f"; report: {report}" if report else "")
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "format_version": "1.0",
            "project": self.project,
            "ok": self.ok,
            "sample": self.sample,
            "runs": [run.to_json() for run in self.runs],
            "not_imported": self.not_imported,
            "differences": self.difference_count,
            "expected_totals": self.expected_totals,
            "found_totals": self.found_totals,
        }


# ---- configs, tags and files --------------------------------------------------------------------------------


def _expected_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, list):
        return "string_set"
    return "string"


def _ms(value: Any) -> int | None:
    """Milliseconds since the epoch of a datetime or pandas Timestamp (naive ones are UTC), to the nearest."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        return None
    return nearest_ms(value)


def same_value(expected: Any, found: Any) -> bool:
    """Equality as 3.x keeps values: NaN equals NaN, datetimes to the millisecond, string sets as sets."""
    is_bool = type(found).__name__ in ("bool", "bool_")
    if isinstance(expected, bool) or is_bool:
        return isinstance(expected, bool) and is_bool and bool(found) == expected
    if isinstance(expected, float):
        try:
            number = float(found)
        except (TypeError, ValueError):
            return False
        return (math.isnan(expected) and math.isnan(number)) or expected == number
    if isinstance(expected, int):
        try:
            return int(found) == expected and float(found) == float(int(found))
        except (TypeError, ValueError, OverflowError):
            return False
    if isinstance(expected, dt.datetime):
        return _ms(expected) == _ms(found)
    if isinstance(expected, list):
        return isinstance(found, (set, frozenset, list, tuple)) and set(expected) == {str(v) for v in found}
    return expected == found


def _target_table(project: str, run_id: str) -> dict[str, tuple[str, Any]]:
    """{3.x path: (neptune-query type, value)} of every attribute of one run (series: their last value)."""
    from neptune_query import runs as nq_runs

    frame = nq_runs.fetch_runs_table(project=project, runs=[run_id], attributes=".", type_suffix_in_column_names=True)
    if frame is None or len(frame) == 0:
        return {}
    row = frame.iloc[0]
    table: dict[str, tuple[str, Any]] = {}
    for column, value in row.items():
        path, _, type_ = str(column).rpartition(":")
        # one row: a column exists only for attributes the run has, so a NaN here is a NaN value
        table[path] = (type_, value)
    return table


class _RunVerifier:
    def __init__(
        self, project: str, entity: EntityBundle, plan: RunPlan, sample: int | None, on_points: Any, head: bool | None = None
    ) -> None:
        self.head = head  # whether the run must head its experiment (None: its experiment has no other run)
        self.project = project
        self.entity = entity
        self.plan = plan
        self.sample = sample
        self.on_points = on_points
        self.check = RunCheck(plan.sys_id, plan.target_run_id)
        self.expected = {"points": 0, "files": 0, "bytes": 0}  # what the bundle says the run holds, once checked

    def _diff(self, path: str, what: str, expected: Any, found: Any, detail: str = "") -> None:
        self.check.differences.append(Difference(self.plan.sys_id, path, what, expected, found, detail))

    def run(self) -> tuple[RunCheck, dict[str, int]]:
        plan = self.plan
        table = _target_table(self.project, plan.target_run_id)
        found = {"points": 0, "files": 0, "bytes": 0}
        expected_paths = set(plan.configs) | {f.target for f in plan.files} | {s.target for s in plan.series}

        checker = SeriesChecker(
            self.entity, plan, TargetSeriesReader(self.project, plan.target_run_id),
            {path: type_ for path, (type_, _) in table.items()}, self.sample, self.on_points, file_digests,
        )
        # the series are read while the files are downloaded (two chains of requests at once); the checker
        # keeps its differences in its own tally, added after the files' so the order is as one after the other
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmig-verify-run") as pool:
            series = pool.submit(checker.check)
            self._check_configs(table)
            self._check_sys(table)
            files_found, bytes_found = self._check_files(table)
            tally = series.result()
        found["files"] += files_found
        found["bytes"] += bytes_found

        self.check.differences.extend(tally.differences)
        found["points"] += tally.found_points
        found["files"] += tally.found_files
        found["bytes"] += tally.found_bytes

        # ASSUMPTION: the 3.x service adds attributes of its own only under sys/ (as the emulator and the
        # neptune-query docs show); anything else in a migrated run came from somewhere else (say, the importing
        # machine's git or console capture) and is a difference.
        for path in sorted(table):
            if path not in expected_paths and not path.startswith("sys/"):
                type_, value = table[path]
                self._diff(path, "unexpected_attribute", None, f"{type_}: {shown_value(value)}")

        self.check.checked = {
            "configs": len(plan.configs),
            "files": len(plan.files),
            "series": tally.series,
            "points": tally.expected_points,
            "file_series_files": tally.expected_files,
        }
        self.expected = {
            "points": tally.expected_points,
            "files": len(plan.files) + tally.expected_files,
            "bytes": sum(int(f.size or 0) for f in plan.files) + tally.expected_bytes,
        }
        if self.check.differences:
            self.check.status = "differs"
        return self.check, found

    def _check_configs(self, table: dict[str, tuple[str, Any]]) -> None:
        for path, value in sorted(self.plan.configs.items()):
            if path not in table:
                self._diff(path, "missing_config", value, None)
                continue
            type_, got = table[path]
            want_type = _expected_type(value)
            if type_ != want_type:
                self._diff(path, "wrong_type", f"{want_type}: {shown_value(value)}", f"{type_}: {shown_value(got)}")
            elif not same_value(value, got):
                self._diff(path, "config_differs", value, got)

    def _check_sys(self, table: dict[str, tuple[str, Any]]) -> None:
        plan = self.plan
        if plan.experiment_name is not None:
            got = table.get("sys/name", ("", None))[1]
            if got != plan.experiment_name:
                self._diff("sys/name", "name_differs", plan.experiment_name, got)
            is_head = table.get("sys/experiment/is_head", ("", None))[1]
            if self.head is not None and bool(is_head) != self.head:
                self._diff("sys/experiment/is_head", "experiment_head_differs", self.head, is_head,
                           "the head of an experiment is its run with the latest legacy creation time (ties by id)")
        else:
            got = table.get("sys/experiment/name", ("", None))[1]
            if isinstance(got, str) and got:
                self._diff("sys/experiment/name", "experiment_differs", None, got, "a plain run is in no experiment")
        for path, want in (("sys/tags", plan.tags), ("sys/group_tags", plan.group_tags)):
            got = table.get(path, ("", None))[1]
            got_set = {str(v) for v in got} if isinstance(got, (set, frozenset, list, tuple)) else set()
            if set(want) != got_set:
                self._diff(path, "tags_differ", sorted(want), sorted(got_set))
        if plan.creation_time is not None:
            got = table.get("sys/creation_time", ("", None))[1]
            if _ms(plan.creation_time) != _ms(got):
                self._diff("sys/creation_time", "creation_time_differs", plan.creation_time, got)

    def _check_files(self, table: dict[str, tuple[str, Any]]) -> tuple[int, int]:
        present = []
        for item in self.plan.files:
            type_, got = table.get(item.target, (None, None))
            if type_ is None:
                self._diff(item.target, "missing_file", f"{item.size} bytes", None)
            elif type_ != "file":
                self._diff(item.target, "wrong_type", "file", type_)
            else:
                present.append((item, got))
        found_bytes = sum(int(getattr(got, "size_bytes", 0) or 0) for _, got in present)
        digests = file_digests([got for _, got in present])
        for item, got in present:
            size = getattr(got, "size_bytes", None)
            if item.size is not None and size != item.size:
                self._diff(item.target, "file_size_differs", item.size, size)
                continue
            digest = digests.get(got)
            if digest is None:
                self._diff(item.target, "file_not_downloadable", item.content_hash, None)
            elif digest != item.content_hash:
                self._diff(item.target, "file_hash_differs", item.content_hash, digest)
        return len(present), found_bytes


# ---- the command --------------------------------------------------------------------------------------------


def verify_bundle(options: VerifyOptions) -> VerifyResult:
    """Everything `nmig verify` does but printing: raises NmigError for bad input; the caller prints
    `render(result)` and decides the exit (`VerifyResult.raise_for_differences`)."""
    import warnings

    from neptune_query.warnings import Http5xxWarning, Http429Warning, Http503Warning

    with warnings.catch_warnings():
        # neptune-query retries these itself; one line per retried request would bury the table
        for category in (Http429Warning, Http503Warning, Http5xxWarning):
            warnings.simplefilter("ignore", category)
        return _verify_bundle(options)


def _verify_bundle(options: VerifyOptions) -> VerifyResult:
    if options.sample is not None and options.sample < 1:
        raise NmigError("--sample must be at least 1")
    bundle = Bundle(options.bundle_dir, options.storage_options)
    project = resolve_project(options.project, bundle, parse_project_map(options.project_map))
    api_token = require_api_token(options.api_token)
    result = VerifyResult(project=project, sample=options.sample)
    # as the import: shard 1/N also takes what is in no run's partition (project metadata, models as runs)
    takes_the_rest = options.shard is None or options.shard.first
    models_too = options.models_as_runs and not options.runs and takes_the_rest
    for kind in () if options.models_as_runs or not takes_the_rest else ("model", "model_version"):
        result.not_imported += [e.sys_id for e in bundle.entities(kind)]
    every_run = bundle.entities("run")
    entities = shard_runs(select_runs(every_run, options.runs), every_run, options.experiments, options.shard)
    # the import report's adjustments are expected, its problems are shown next to the differences they cause
    import_report = (
        StateFile.at(options.import_report, options.storage_options) if options.import_report is not None
        else default_report_path(bundle.root, project)
    )
    report_items = read_items(import_report)
    adjusted, import_problems = report_items.adjusted, report_items.problems

    from nmig.importer import client as nclient
    from nmig.loopback import prepare_client_env

    prepare_client_env(api_token)
    nclient.quiet_client_logs()
    nclient.retry_query_answers_quickly()
    import neptune_query
    from neptune_query import runs as nq_runs

    neptune_query.set_api_token(api_token)
    try:
        existing = set(nq_runs.list_runs(project=project))
    except Exception as exc:  # neptune-query raises its own kinds for auth, not-found and transport errors
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise NmigError(f"cannot read project {project} from the 3.x service: {text}") from None

    plans: list[tuple[EntityBundle, RunPlan]] = []
    model_plans: dict[str, RunPlan] = {}
    for entity in entities + ([e for e, _ in models_with_their_model(bundle)] if models_too else []):
        try:
            if entity.kind == "run":
                plans.append((entity, plan_run(entity, options.experiments)))
                continue
            plan = plan_run(entity, options.experiments, True, model_plans.get(model_id_of(entity)))
            model_plans.setdefault(entity.sys_id, plan)
            plans.append((entity, plan))
        except PlanRefused as exc:
            # an incomplete export: that run is not in 3.x, so the migration is not complete
            result.runs.append(RunCheck(entity.sys_id, None, "not_importable", note=str(exc)))
    # every experiment's head among all runs of the bundle (not only those --runs selects), as the import decides it
    members = [m for m in (experiment_member(e, options.experiments) for e in every_run) if m]
    shared = shared_names(members)
    expected_heads = heads(m for m in members if m[0] in shared)
    total = sum(s.points if not options.sample else min(s.points, options.sample) for _, p in plans for s in p.series)
    bar = None
    if not options.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, unit=" pts", unit_scale=True, desc="Verifying", file=sys.stderr)
    on_points = _locked(bar.update) if bar is not None else (lambda n: None)

    def check_one(entity: EntityBundle, plan: RunPlan) -> tuple[RunCheck, dict[str, int], dict[str, int]]:
        """(check, found, expected) of one run; reads nothing but the target, writes nothing shared but the bar."""
        if plan.target_run_id not in existing and any(i["case"] == "trashed_in_target" for i in adjusted.get(entity.sys_id, [])):
            # --sync-trash moved it to 3.x's trash (trashed in 2.x after its export): its absence is expected
            check = RunCheck(entity.sys_id, plan.target_run_id, "ok", note="trashed in 2.x and in 3.x (--sync-trash)")
            check.adjusted = adjusted.get(entity.sys_id, [])
            on_points(sum(s.points if not options.sample else min(s.points, options.sample) for s in plan.series))
            nothing = {"points": 0, "files": 0, "bytes": 0}
            return check, nothing, dict(nothing)
        if plan.target_run_id not in existing:
            check = RunCheck(entity.sys_id, plan.target_run_id, "missing", note="the run is not in the target project")
            check.differences.append(Difference(entity.sys_id, "", "missing_run", plan.target_run_id, None))
            check.adjusted = adjusted.get(entity.sys_id, [])
            _note_import_problems(check, import_problems)
            on_points(sum(s.points if not options.sample else min(s.points, options.sample) for s in plan.series))
            return check, {}, {}
        head = (expected_heads.get(plan.experiment_name) == plan.sys_id) if plan.experiment_name in expected_heads else None
        verifier = _RunVerifier(project, entity, plan, options.sample, on_points, head)
        try:
            check, found = verifier.run()
        except NmigError:
            raise
        except Exception as exc:  # a read that failed after the client's retries: this run, not the others
            check = verifier.check
            check.status = "differs"
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            check.differences.append(Difference(entity.sys_id, "", "read_failed", None, None, f"{type(exc).__name__}: {text}"))
            found = {"points": 0, "files": 0, "bytes": 0}
            verifier.expected = {"points": 0, "files": 0, "bytes": 0}
        check.adjusted = adjusted.get(entity.sys_id, [])
        if check.status != "ok":
            _note_import_problems(check, import_problems)
        return check, found, verifier.expected

    # Several runs are checked at once: under 429s and 5xx most of a run's time is the client's back-off
    # (Retry-After, exponential waits), which overlaps across runs instead of adding up. The results are
    # folded in bundle order below, so the table, the report and the exit status do not depend on timing.
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=max(1, options.max_workers), thread_name_prefix="nmig-verify") as pool:
            # --runs: those runs only
            project_plan = plan_project(bundle.info) if not options.runs and takes_the_rest else None
            # the project-metadata run is checked alongside the others (first: it is one more chain of reads)
            project_check = (
                pool.submit(_check_project_metadata, project, project_plan, existing, adjusted)
                if project_plan is not None else None
            )
            # the largest runs start first, so the longest chain of reads does not begin last
            by_size = sorted(range(len(plans)), key=lambda i: -sum(s.points for s in plans[i][1].series))
            started = {i: pool.submit(check_one, *plans[i]) for i in by_size}
            futures = [started[i] for i in range(len(plans))]
            try:
                outcomes = [future.result() for future in futures]
                project_run = project_check.result() if project_check is not None else None
            except BaseException:
                for future in [*futures, *([project_check] if project_check is not None else [])]:
                    future.cancel()
                raise
        for (entity, _), (check, found, expected) in zip(plans, outcomes, strict=True):
            # totals count runs; models and model versions imported as runs are counted apart ("models")
            counted = "runs" if entity.kind == "run" else "models"
            if counted == "models":
                for where in (result.expected_totals, result.found_totals):
                    where.setdefault("models", 0)
            result.expected_totals[counted] += 1
            result.runs.append(check)
            if check.status == "missing":
                continue
            result.found_totals[counted] += 1
            if counted == "models":
                continue
            for key in ("points", "files", "bytes"):
                result.found_totals[key] += found[key]
                result.expected_totals[key] += expected[key]
    finally:
        if bar is not None:
            bar.close()
    if project_run is not None:
        result.runs.append(project_run)
    if options.report is not None:
        result.report_path = tagged(options.report, options.shard)
        write_json_atomically(result.report_path, result.to_json())
    return result


def _locked(update: Any) -> Any:
    """`update` (a progress bar's) made safe to call from several threads."""
    import threading

    lock = threading.Lock()

    def locked(n: int) -> None:
        with lock:
            update(n)

    return locked


def _check_project_metadata(
    project: str, plan: RunPlan, existing: set[str], adjusted: dict[str, list[dict[str, str]]]
) -> RunCheck:
    """The project-metadata run holds every config plan_project says."""
    if plan.target_run_id not in existing:
        check = RunCheck(plan.sys_id, plan.target_run_id, "missing", note="the project-metadata run is not in the target project")
        check.differences.append(Difference(plan.sys_id, "", "missing_run", plan.target_run_id, None))
        return check
    check, _ = _RunVerifier(project, None, plan, None, lambda n: None).run()  # type: ignore[arg-type]
    check.adjusted = adjusted.get(plan.sys_id, [])
    return check


def _natural(text: str) -> list[Any]:
    """Sort key putting VIS-2 before VIS-10."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _note_import_problems(check: RunCheck, problems: dict[str, list[str]]) -> None:
    said = problems.get(check.sys_id)
    if said:
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        check.note = "; ".join(filter(None, [check.note, f"the import report says: {said[0]}{more}"]))


def render(result: VerifyResult) -> str:
    """The per-run table of what matches and what differs (path, expected, found)."""
    lines = [f"Verify of {result.project}" + (f" (sampled: {result.sample} points per series)" if result.sample else "")]
    lines.append(f"{'run':<22} {'3.x run id':<28} {'configs':>7} {'files':>6} {'series':>6} {'points':>11}  result")
    for run in sorted(result.runs, key=lambda r: _natural(r.sys_id)):
        checked = run.checked
        verdict = {"ok": "OK", "differs": f"{len(run.differences)} DIFFERENCE(S)", "missing": "MISSING",
                   "not_importable": "NOT IMPORTED"}[run.status]
        lines.append(
            f"{run.sys_id:<22} {str(run.target_run_id or '-'):<28} {checked.get('configs', 0):>7} {checked.get('files', 0):>6} "
            f"{checked.get('series', 0):>6} {checked.get('points', 0):>11,}  {verdict}"
        )
        if run.note:
            lines.append(f"    {run.note}")
        for diff in run.differences[:50]:
            lines.append(
                f"    {diff.path or '(run)'}: {diff.what}: expected {shown_value(diff.expected)!r}, found {shown_value(diff.found)!r}"
                + (f" ({diff.detail})" if diff.detail else "")
            )
        if len(run.differences) > 50:
            lines.append(f"    ... and {len(run.differences) - 50} more (see --report)")
        if run.adjusted:
            shown = "; ".join(f"{item['path'] or '(run)'} {item['case']}" for item in run.adjusted[:5])
            more = f"; and {len(run.adjusted) - 5} more" if len(run.adjusted) > 5 else ""
            lines.append(f"    adjusted by the import as documented (expected, see the import report): {shown}{more}")
    if result.not_imported:
        lines.append(f"Not imported by design (3.x has no model registry): {len(result.not_imported)} model entities")
    e, f = result.expected_totals, result.found_totals
    lines.append(
        f"Expected {e['runs']} runs, {e['points']:,} points, {e['files']} files, {e['bytes']:,} bytes; "
        f"found {f['runs']} runs, {f['points']:,} points, {f['files']} files, {f['bytes']:,} bytes"
    )
    lines.append("All runs match." if result.ok else f"DIFFERENCES FOUND in {sum(r.status != 'ok' for r in result.runs)} run(s).")
    return "\n".join(lines)
