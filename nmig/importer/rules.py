"""The 2.x -> 3.x remapping, as data in one place.

Two ordered tables decide what becomes of a legacy attribute:

* PATH_RULES: the first rule whose pattern matches the legacy path wins. A rule either names a special
  treatment (the run's name, tags, not copied, a unit conversion, ...) or only rewrites the path prefix
  (``sys/*`` -> ``legacy_sys/*``, ``monitoring/*`` -> ``runtime/*``) and leaves the decision to the type.
* TYPE_RULES: what a legacy attribute type becomes in 3.x (config, metric, file, ...).

`map_attribute(path, type)` combines both. Everything else in the importer (planning, dry run, replay,
docs/mapping.md) reads these tables, so the mapping is changed here and only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):
    """What the importer does with one legacy attribute."""

    CONFIG = "config"  # a config (atom) of the same type
    STRING_SET_CONFIG = "string_set_config"  # a string-set config
    FLOAT_SECONDS_CONFIG = "float_seconds_config"  # a float config, in seconds
    INT_BYTES_CONFIG = "int_bytes_config"  # an integer config, in bytes
    RUN_NAME = "run_name"  # the experiment name given at run creation
    DESCRIPTION = "description"  # sys/description config
    TAGS = "tags"  # the run's tags
    GROUP_TAGS = "group_tags"  # the run's group tags
    METRIC = "metric"  # a float series (metric) with the original steps and timestamps
    STRING_SERIES = "string_series"  # a string series with the original steps and timestamps
    FILE = "file"  # a file attribute
    FILESET_ENTRIES = "fileset_entries"  # one file attribute per entry, at <path>/<entry>
    FILE_SERIES = "file_series"  # a file series with the original steps and timestamps
    SOURCE_CODE = "source_code"  # the native 3.x source_code/* fields
    ARTIFACT_CONFIGS = "artifact_configs"  # hash and file list as configs under the path
    REPORT_ONLY = "report_only"  # recorded in the import report, not written
    NOT_COPIED = "not_copied"  # deliberately left out (reason given)
    SKIPPED = "skipped"  # unknown type: left out and reported


@dataclass(frozen=True)
class PathRule:
    """`pattern` is an exact path, a prefix ending in ``/*``, or ``*`` for any path. `target` rewrites the path: ``{rest}`` is
    the part after the prefix, ``{path}`` the whole legacy path. `action` None means: decided by the type."""

    pattern: str
    target: str
    action: Action | None
    why: str

    def matches(self, path: str) -> bool:
        if self.pattern == "*":
            return True
        if self.pattern.endswith("/*"):
            return path.startswith(self.pattern[:-1])
        return path == self.pattern

    def target_path(self, path: str) -> str:
        rest = path[len(self.pattern) - 1 :] if self.pattern.endswith("/*") else ""
        return self.target.format(rest=rest, path=path)


@dataclass(frozen=True)
class TypeRule:
    legacy_type: str
    action: Action
    why: str


# Ordered: the first match wins, so exact sys/ paths come before the sys/* prefix rule.
PATH_RULES: tuple[PathRule, ...] = (
    PathRule(
        "sys/name",
        "sys/name",
        Action.RUN_NAME,
        "3.x shows the experiment name given at creation as the run's name; the full legacy name is also kept in legacy_sys/name",
    ),
    PathRule("sys/description", "sys/description", Action.DESCRIPTION, "kept as the run's description"),
    PathRule("sys/tags", "sys/tags", Action.TAGS, "become the run's tags"),
    PathRule("sys/group_tags", "sys/group_tags", Action.GROUP_TAGS, "become the run's group tags"),
    PathRule("sys/state", "", Action.NOT_COPIED, "a migrated run is never live; 3.x has no run state to set"),
    PathRule(
        "sys/running_time",
        "legacy_sys/running_time",
        Action.FLOAT_SECONDS_CONFIG,
        "3.x computes no running time; kept as a float in seconds",
    ),
    PathRule(
        "sys/monitoring_time",
        "legacy_sys/monitoring_time",
        Action.FLOAT_SECONDS_CONFIG,
        "kept as a float in seconds",
    ),
    PathRule("sys/size", "legacy_sys/size", Action.INT_BYTES_CONFIG, "kept as an integer in bytes"),
    PathRule(
        "sys/*",
        "legacy_sys/{rest}",
        None,
        "3.x owns sys/ (creation time, owner, ids are set by the service); the legacy values stay readable",
    ),
    PathRule("monitoring/*", "runtime/{rest}", None, "3.x keeps hardware and console monitoring under runtime/"),
    PathRule("*", "{path}", None, "same path"),
)

TYPE_RULES: tuple[TypeRule, ...] = (
    TypeRule("float", Action.CONFIG, "float config; NaN and +-Infinity kept"),
    TypeRule("int", Action.CONFIG, "int config"),
    TypeRule("bool", Action.CONFIG, "bool config"),
    TypeRule("string", Action.CONFIG, "string config"),
    TypeRule("datetime", Action.CONFIG, "datetime config (UTC, milliseconds)"),
    TypeRule("stringSet", Action.STRING_SET_CONFIG, "string-set config"),
    TypeRule("floatSeries", Action.METRIC, "metric with the original steps and timestamps"),
    TypeRule("stringSeries", Action.STRING_SERIES, "string series with the original steps and timestamps"),
    TypeRule("file", Action.FILE, "file attribute (same bytes; name kept in the upload destination)"),
    TypeRule("fileSet", Action.FILESET_ENTRIES, "one file attribute per entry at <path>/<entry>; unsafe entry names reported"),
    TypeRule(
        "fileSeries",
        Action.FILE_SERIES,
        "file series with the original steps and timestamps; names kept in the upload destination, descriptions in the report",
    ),
    TypeRule(
        "imageSeries",
        Action.FILE_SERIES,
        "file series with the original steps and timestamps; names kept in the upload destination, descriptions in the report",
    ),
    TypeRule(
        "gitRef",
        Action.SOURCE_CODE,
        "native 3.x fields source_code/commit/{commit_id,message,author_name,author_email,commit_date}, "
        "source_code/branch, source_code/dirty, source_code/remote/<name> (the legacy client kept remote URLs "
        "without names: the first becomes origin, the others remote_2, remote_3, ...)",
    ),
    TypeRule(
        "artifact",
        Action.ARTIFACT_CONFIGS,
        "configs <path>/hash, <path>/files/count and per file <path>/files/<i>/{file_path,file_hash,type,size,"
        "metadata/<key>} (the location is metadata/location)",
    ),
    TypeRule("experimentState", Action.REPORT_ONLY, "run state is not a 3.x attribute; recorded in the import report"),
    TypeRule("notebookRef", Action.REPORT_ONLY, "3.x has no notebook checkpoints; recorded in the import report"),
)

_TYPE_RULES_BY_NAME = {rule.legacy_type: rule for rule in TYPE_RULES}

# Prefix of the 3.x native source fields a gitRef becomes (the same names neptune-scale's own source
# tracking uses).
SOURCE_CODE_NAMESPACE = "source_code"

# Entities that are not runs: 3.x has no model registry.
NOT_IMPORTED_KINDS = {
    "model": "3.x has no model registry; the model stays in the bundle (`nmig import --models-as-runs` makes it a run)",
    "model_version": "3.x has no model registry; the model version stays in the bundle (`--models-as-runs` makes it a run)",
}


@dataclass(frozen=True)
class Mapping:
    """The decision for one legacy attribute: what it becomes, where, and which rules said so."""

    action: Action
    target: str  # the 3.x path (or path prefix for fileSet/artifact/gitRef); "" when nothing is written
    why: str


def map_attribute(path: str, legacy_type: str) -> Mapping:
    """Decide what a legacy attribute becomes. Pure: no I/O."""
    path_rule = next(rule for rule in PATH_RULES if rule.matches(path))
    target = path_rule.target_path(path)
    if path_rule.action is not None:
        return Mapping(path_rule.action, target, path_rule.why)
    type_rule = _TYPE_RULES_BY_NAME.get(legacy_type)
    if type_rule is None:
        return Mapping(Action.SKIPPED, "", f"attribute type {legacy_type!r} has no 3.x counterpart")
    if type_rule.action is Action.SOURCE_CODE:
        return Mapping(Action.SOURCE_CODE, SOURCE_CODE_NAMESPACE, type_rule.why)
    why = type_rule.why if path_rule.pattern == "*" else f"{path_rule.why}; {type_rule.why}"
    return Mapping(type_rule.action, target, why)


def mapping_table_markdown() -> str:
    """The mapping as Markdown tables (docs/mapping.md is this text; a test keeps the two in sync)."""
    lines = [
        "# 2.x -> 3.x mapping",
        "",
        "Generated from `nmig/importer/rules.py` (`python -c 'from nmig.importer.rules import mapping_table_markdown as m; print(m(), end=\"\")'`).",
        "The first path rule that matches decides where an attribute goes; where it says *by type*, the type table",
        "decides what it becomes.",
        "",
        "## Paths",
        "",
        "| Legacy path | 3.x path | Becomes | Why |",
        "|---|---|---|---|",
    ]
    for rule in PATH_RULES:
        target = rule.target.replace("{rest}", "*").replace("{path}", "same path") or "(nothing)"
        action = rule.action.value if rule.action else "by type"
        lines.append(f"| `{rule.pattern}` | `{target}` | {action} | {rule.why} |")
    lines += ["", "## Types", "", "| Legacy type | Becomes | Notes |", "|---|---|---|"]
    for type_rule in TYPE_RULES:
        lines.append(f"| `{type_rule.legacy_type}` | {type_rule.action.value} | {type_rule.why} |")
    lines.append("| any other type | skipped | listed in the import report with its type |")
    lines += ["", "## Entities", "", "| Legacy entity | In 3.x |", "|---|---|", "| run | a run (id: `sys/custom_run_id`, else the legacy `sys/id`; a custom id shaped like another run's legacy id, `<KEY>-<n>`, or one 3.x cannot hold as it stands (a `/`, over 730 bytes), gets `~<its own sys/id>` appended before it is fitted, so no two runs meet on one id and every run lands; created with the legacy `sys/creation_time`) |"]
    lines.append(
        "| project | its own 3.x run `nmig-legacy-project` (only when the bundle has project metadata): the legacy "
        "workspace, name, key, visibility, description and URL as `legacy_project/*` configs (the description also "
        "as the run's `sys/description`), and the project-level attributes mapped like a run's (`sys/*` -> "
        "`legacy_sys/*`, others at their paths, configs only); a series or file of the project is reported "
        "(project_attribute_not_written) |"
    )
    for kind, why in NOT_IMPORTED_KINDS.items():
        lines.append(f"| {kind} | not imported: {why} |")
    lines.append(
        "| model, model version (`--models-as-runs`) | a run each (id: the legacy sys/id; in no experiment), all "
        "attributes, files and series mapped like a run's; tags `model:<model id>` and, on a version, "
        "`model_version:<version id>`; configs `model_registry/kind`, `model_registry/model_id` and, on a version, "
        "`model_registry/stage` (also in `legacy_sys/stage`), `model_registry/model_run_id` and the model's own "
        "configs under `model_registry/model/<path>` |"
    )
    from nmig.importer.experiments import MODE_DOCS  # local, like limits below

    lines += ["", "## Experiments (`nmig import --experiments`)", "", "| Mode | What it does | Why |", "|---|---|---|"]
    lines += [f"| {mode} | {what} | {why} |" for mode, what, why in MODE_DOCS]
    lines += [
        "",
        "## 3.x limits (checked before sending; every case is listed in the import report)",
        "",
        "| Case | Rule |",
        "|---|---|",
    ]
    from nmig.importer.limits import LIMIT_RULES  # local: limits imports nothing from here either way

    for case, rule_text in LIMIT_RULES:
        lines.append(f"| {case} | {rule_text} |")
    lines += [
        "",
        "The importing machine's own git repository and console output are never recorded (neptune-scale's",
        "source tracking and console capture are switched off for migrated runs).",
        "",
    ]
    return "\n".join(lines)
