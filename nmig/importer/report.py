"""The import report: its closed set of cases (data), its items, and reading and writing the report file.

Every line of the report is an `Event` whose case is one of `CASES`, each marked as
* an adjustment: the item lands differently from the bundle, or deliberately not at all, by a documented rule
  (`nmig verify` expects it: shown next to the run, not counted as a difference);
* a problem: the item or the run did not land although it should have (verify shows it next to the
  differences it causes);
* bookkeeping: what the import did along the way, with no effect on what the target holds.
An Event with a case outside the set cannot be made, and verify classifies a report's items by the set alone
(an item with an unknown case is not expected). docs/import-report.md is generated from this module
(`report_markdown`), and a test keeps the two equal.

The report file, `import-report.<ws>__<project>.json` next to the state file (or `<state stem>.report.json`),
is written by `nmig import` at the end of every invocation and read by `nmig verify`; see REPORT_LAYOUT.
`nmig import --shard I/N` writes its own, tagged as its state file is (`import-report.<ws>__<project>.shard-1-of-4.json`);
verify reads the report with every shard's next to it (`read_items`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from nmig.importer.state import StateFile, default_state_path
from nmig.secrets import redact
from nmig.sharding import SHARD_TAG, Shard, tagged_name

REPORT_FORMAT = "nmig-import-report"
REPORT_VERSION = "1.0"


class CaseKind(str, Enum):
    ADJUSTMENT = "adjustment"
    PROBLEM = "problem"
    BOOKKEEPING = "bookkeeping"


@dataclass(frozen=True)
class Case:
    name: str  # what the report's items say in "case"
    kind: CaseKind
    meaning: str  # what happened to the item, for docs/import-report.md
    source: str  # the module that reports it


_A, _P, _B = CaseKind.ADJUSTMENT, CaseKind.PROBLEM, CaseKind.BOOKKEEPING

# Every case an import report can hold. A new case is added here (and its docs regenerated), nowhere else.
CASES: tuple[Case, ...] = (
    # planning (plan.py): what the mapping and the 3.x limits do to a run's attributes
    Case("run_id_adjusted", _A, "the 3.x run id differs from the legacy one (`/` replaced, shortened, or `~<sys/id>` appended to a custom_run_id shaped like another run's sys/id); the legacy ids stay in `legacy_sys/*`", "plan"),
    Case("experiment_not_named", _A, "the run is a plain run, in no experiment: its legacy name is the legacy client's default (\"Untitled\"), which would merge unrelated runs (see `--experiments`); the name stays in `legacy_sys/name`", "plan"),
    Case("project_attribute_not_written", _A, "a project-level attribute that the project-metadata run cannot hold (a series or file of the project, listed by the export without its content); it stays in export.json", "plan"),
    Case("name_shortened", _A, "the run name (experiment name) was shortened to 730 bytes; the full name stays in `legacy_sys/name`", "plan"),
    Case("path_shortened", _A, "the 3.x path was over 1,024 bytes and is shortened deterministically; both paths given", "plan"),
    Case("path_collision", _A, "another legacy attribute already maps to the same 3.x path; the first keeps it, this one is not written", "plan"),
    Case("skipped_at_export", _A, "the export left the attribute out (its type and reason given)", "plan"),
    Case("malformed", _A, "the bundle's value cannot be read as its type (or the creation time is unreadable); not written", "plan"),
    Case("empty_value", _A, "the attribute has no value; not written", "plan"),
    Case("empty_series", _A, "a series without points: 3.x creates a series with its first point, so none is created", "plan"),
    Case("unsafe_entry", _A, "a fileSet entry name is not a safe relative path; that entry is not written", "plan"),
    Case("not_written", _A, "the type has no 3.x counterpart; the value is kept in the report", "plan"),
    Case("not_copied", _A, "deliberately left out by the mapping (reason given)", "plan"),
    Case("skipped", _A, "an attribute type the mapping does not know; left out", "plan"),
    Case("missing", _A, "the run has no legacy creation time; it gets the import time", "plan"),
    Case("datetime_out_of_range", _A, "a datetime outside 3.x's 1900-01-01..2299-12-31: a config is written as its exact ISO string at the same path; a creation time is not set (the run gets the import time)", "plan"),
    # series (limits.py, through replay.py): the 3.x limits on steps, timestamps and values
    Case("step_out_of_range", _A, "points with a step below 0 or at/beyond 1e12 are not sent (count and first step given)", "limits"),
    Case("step_collision", _A, "points on a step not above the previous one after rounding to 6 decimals are not sent; the first at each step is kept", "limits"),
    Case("timestamp_decreasing", _A, "points with a timestamp earlier than the previous point's are sent with the previous point's timestamp", "limits"),
    Case("string_value_too_long", _A, "string-series values over 1 MiB are cut to 1 MiB on a character boundary", "limits"),
    # replay (replay.py)
    Case("description_not_written", _A, "file-series point descriptions: 3.x file series have no description field; they stay in the bundle", "replay"),
    Case("duplicates_rejected", _A, "on a resumed run, points the interrupted import had already sent were rejected; none is stored twice", "replay"),
    Case("history_changed", _P, "a re-synced run (after `nmig export --update`): 2.x changed or removed points of the series at or before the last step imported, which 3.x cannot change; only later points were sent, the bundle holds the new history", "replay"),
    Case("not_removable", _P, "a re-synced run: a config, file or series removed in 2.x since the last import stays in 3.x, which has no way to delete an attribute", "replay"),
    Case("failed", _P, "the service or the bundle failed the item (or the run); re-running the import retries it", "replay"),
    Case("client_warning", _B, "the client warned about the item; it landed", "replay"),
    Case("sent_again_alone", _B, "items of a request the service rejected were read back and sent again, each alone, and stored (only the rejected item is reported, as failed)", "replay"),
    # the scheduler (runner.py)
    Case("refused", _P, "the run cannot be imported at all (incomplete or damaged in the bundle, its 3.x run id already taken)", "runner"),
    Case("not_imported", _A, "models and model versions: 3.x has no model registry", "runner"),
    Case("project_key_taken", _A, "the legacy project key is taken in the 3.x workspace; the project is created without it", "runner"),
    Case("run_id_shared", _B, "another run's custom_run_id is this run's legacy sys/id: this run keeps it as its 3.x id, the other is suffixed with `~<its sys/id>` (run_id_adjusted)", "runner"),
    Case("experiment_head", _B, "the experiment's head (the run with the latest legacy creation time, ties by id) was asserted again at the end of the import", "runner"),
    Case("project_metadata", _B, "the legacy project's metadata (identity, description, project-level attributes) was written to the project-metadata run", "runner"),
    Case("already_imported", _B, "an earlier invocation imported the run; skipped", "runner"),
    Case("re_synced", _B, "the run was imported before from an older export of it (`nmig export --update`) and was brought up to date: configs written again, tags removed in 2.x removed, changed files uploaded, series points after each series' last step sent", "runner"),
    Case("trashed_in_source", _B, "the run was trashed in 2.x after it was exported (export.json `trashed`); it stays in 3.x unless `--sync-trash`", "runner"),
    Case("trashed_in_target", _A, "`--sync-trash`: the run, trashed in 2.x, was moved to the 3.x project's trash (or, never imported, was not imported); verify expects it missing", "runner"),
    Case("resumed", _B, "the run was resumed after the target was asked what it already holds", "runner"),
    Case("earlier_attempt_failed", _B, "what failed in an earlier attempt at the run (it was retried)", "runner"),
)

CASE_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}


def kind_of(case: str) -> CaseKind | None:
    """The kind of a report case; None for a string that is not one (e.g. in a hand-edited report)."""
    known = CASE_BY_NAME.get(case)
    return known.kind if known is not None else None


@dataclass(frozen=True)
class Event:
    """One line of the import report: something adjusted, skipped, not written, or failed."""

    run: str  # the legacy sys/id
    path: str  # the legacy path ("" for the run as a whole)
    case: str  # one of CASES
    detail: str  # what was done, for humans

    def __post_init__(self) -> None:
        if self.case not in CASE_BY_NAME:
            raise ValueError(f"{self.case!r} is not an import report case (nmig.importer.report.CASES)")

    def to_json(self) -> dict[str, str]:
        return {"run": self.run, "path": self.path, "case": self.case, "detail": self.detail}


# ---- the report file -----------------------------------------------------------------------------------------

REPORT_LAYOUT = (
    '{"format": "nmig-import-report", "format_version": "1.0", "project", "project_note", "started_at", '
    '"finished_at", "runs": {"imported", "already_imported", "failed", "refused", "not_imported": [legacy ids]}, '
    '"targets": {legacy id: 3.x run id}, "items": [{"run", "path", "case", "detail"}]}'
)
RUN_STATUSES = ("imported", "already_imported", "failed", "refused", "not_imported")


def report_name_for(state_name: str) -> str:
    """The name of the import report of a state file of this name: `import-report.<...>.json` for
    `import-state.<...>.json`, `<stem>.report.json` for another; a shard's (nmig.sharding.tagged_name) is the
    untagged one's, tagged the same way."""
    stem = state_name[: -len(".json")] if state_name.endswith(".json") else state_name
    tag = SHARD_TAG.fullmatch(stem.rsplit(".", 1)[-1]) if "." in stem else None
    if tag is not None:
        untagged = report_name_for(stem.rsplit(".", 1)[0] + ".json")
        return tagged_name(untagged, Shard(int(tag.group(1)), int(tag.group(2))))
    stem = stem.replace("import-state", "import-report", 1) if "import-state" in stem else stem + ".report"
    return stem + ".json"


def report_path_for(state_path: StateFile | Path) -> StateFile:
    """The import report lives next to the state file (inside the bundle by default)."""
    state = StateFile.at(state_path)
    return state.with_name(report_name_for(state.name))


def default_report_path(
    bundle_dir: Path | str, project: str, state_path: StateFile | Path | None = None,
    storage_options: dict[str, Any] | None = None,
) -> StateFile:
    """Where `nmig import` writes its report (for `nmig verify`)."""
    return report_path_for(state_path or default_state_path(bundle_dir, project, storage_options))


def read_report(path: StateFile | Path, project: str) -> dict[str, Any]:
    """An earlier import report for the same project ({} when there is none or it is not one)."""
    try:
        old = json.loads(StateFile.at(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("format") != REPORT_FORMAT or old.get("project") != project:
        return {}
    return old


def write_report(
    path: StateFile,
    *,
    project: str,
    project_note: str,
    started_at: str,
    runs: Mapping[str, Iterable[str]],
    targets: Mapping[str, str],
    events: Iterable[Event],
    earlier: dict[str, Any],
) -> None:
    """Write the report of one invocation, keeping what `earlier` (read_report) says about runs it did not
    touch. `runs`: {status (RUN_STATUSES): legacy ids}."""
    doc = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "project": project,
        "project_note": project_note,
        "started_at": started_at,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        # copies: what is carried over from the earlier report must not end up in the caller's lists
        "runs": {status: list(runs.get(status, ())) for status in RUN_STATUSES},
        "targets": dict(targets),
        # client messages are shown as they come, minus anything shaped like a token
        "items": [{**e.to_json(), "detail": redact(e.detail)} for e in events],
    }
    _carry_over(earlier, doc)
    path.write_json(doc)


def _carry_over(old: dict[str, Any], doc: dict[str, Any]) -> None:
    """Keep what an earlier report says about runs this invocation did not touch (e.g. another --runs
    selection), so the report always covers every run of the bundle that nmig import has seen."""
    touched = {run for runs in doc["runs"].values() for run in runs} | set(doc["targets"])
    for status, runs in (old.get("runs") or {}).items():
        if status in doc["runs"] and isinstance(runs, list):
            doc["runs"][status] += [r for r in runs if r not in touched and r not in doc["runs"][status]]
    for run, target_id in (old.get("targets") or {}).items():
        doc["targets"].setdefault(run, target_id)
    doc["items"] += [i for i in old.get("items") or [] if isinstance(i, dict) and i.get("run") not in touched and i.get("run")]


def earlier_items(earlier: dict[str, Any], sys_id: str) -> list[Event] | None:
    """What an earlier report listed for a run it says was imported (its adjustments, what was not written),
    or None when it does not list the run as imported. Items whose case is not in CASES are dropped."""
    runs = earlier.get("runs") if isinstance(earlier.get("runs"), dict) else {}
    if not any(sys_id in (runs.get(status) or []) for status in ("imported", "already_imported")):
        return None
    return [
        Event(sys_id, str(item.get("path") or ""), str(item.get("case")), str(item.get("detail") or ""))
        for item in earlier.get("items") or []
        if isinstance(item, dict) and item.get("run") == sys_id and item.get("case") != "already_imported"
        and str(item.get("case")) in CASE_BY_NAME
    ]


@dataclass
class ReportItems:
    """An import report's items by legacy run id, as verify uses them."""

    adjusted: dict[str, list[dict[str, str]]]  # the deliberate adjustments (expected)
    problems: dict[str, list[str]]  # what went wrong, or what verify cannot take as expected, one line each


def _imported_runs(doc: dict[str, Any]) -> set[str]:
    runs = doc.get("runs") if isinstance(doc.get("runs"), dict) else {}
    return {str(r) for status in ("imported", "already_imported") for r in runs.get(status) or [] if isinstance(runs.get(status), list)}


def read_items(path: StateFile | Path) -> ReportItems:
    """The items of an import report and of every shard's report next to it (none when there is none) sorted
    by their case's kind: adjustments are expected, problems (and items whose case is not one of CASES) are
    not, bookkeeping is left out. A run that several reports list (a shard's, then an import without --shard
    that found it imported) has the items of the last report finished that lists it as imported, else of all."""
    items = ReportItems({}, {})
    docs = []
    report = StateFile.at(path)
    for one in [report, *report.tagged_siblings()]:
        try:
            doc = json.loads(one.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    docs.sort(key=lambda doc: str(doc.get("finished_at") or ""))
    chosen: dict[str, int] = {}  # legacy id -> the report whose items it keeps
    for index, doc in enumerate(docs):
        for run in _imported_runs(doc):
            chosen[run] = index
    said_before: set[tuple[str, ...]] = set()  # items of the reports read so far: another report repeating one adds nothing
    for index, doc in enumerate(docs):
        said: set[tuple[str, ...]] = set()
        for item in doc.get("items") or []:
            if not isinstance(item, dict):
                continue
            run = str(item.get("run"))
            key = (run, str(item.get("path")), str(item.get("case")), str(item.get("detail")))
            said.add(key)
            if chosen.get(run, index) != index or key in said_before:
                continue
            case = key[2]
            kind = kind_of(case)
            if kind is CaseKind.ADJUSTMENT:
                items.adjusted.setdefault(run, []).append({k: str(item.get(k, "")) for k in ("path", "case", "detail")})
            elif kind is not CaseKind.BOOKKEEPING:
                items.problems.setdefault(run, []).append(f"{item.get('path') or '(run)'}: {case}: {item.get('detail', '')}"[:300])
        said_before |= said
    return items


# ---- docs ----------------------------------------------------------------------------------------------------


def report_markdown() -> str:
    """docs/import-report.md (a test keeps the file equal to this text)."""
    lines = [
        "# The import report",
        "",
        "Generated from `nmig/importer/report.py` (`python -c 'from nmig.importer.report import report_markdown as m; print(m(), end=\"\")'`).",
        "",
        "`nmig import` writes `import-report.<workspace>__<project>.json` next to its state file (inside the bundle",
        "by default; `<state stem>.report.json` for a `--state` file of another name) at the end of every",
        "invocation. Runs an invocation did not touch keep what an earlier report said about them, so the report",
        "covers every run of the bundle that `nmig import` has seen. `nmig verify` reads it. Its layout:",
        "",
        f"    {REPORT_LAYOUT}",
        "",
        "Each item names the legacy run (`sys/id`), the legacy path (empty for the run as a whole), its case and",
        "what was done. Every case is one of the table below, of one of three kinds:",
        "",
        "- **adjustment**: the item lands differently from the bundle, or deliberately not at all, by a documented",
        "  rule; `nmig verify` expects it (shown next to the run, not counted as a difference);",
        "- **problem**: the item or the run did not land although it should have; verify shows it next to the",
        "  differences it causes, and re-running the import retries it;",
        "- **bookkeeping**: what the import did along the way, with no effect on what the target holds.",
        "",
        "An item whose case is not in this table (a hand-edited report) is never taken as expected.",
        "",
        "| Case | Kind | Reported by | Meaning |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        lines.append(f"| `{case.name}` | {case.kind.value} | {case.source} | {case.meaning} |")
    lines.append("")
    return "\n".join(lines)
