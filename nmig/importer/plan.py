"""From one bundle entity to what will be written in 3.x: a RunPlan. Pure apart from reading the bundle.

The plan holds everything small (configs, tags, file references, which series go where, what is adjusted or
left out and why); series points stay in the bundle and are streamed at replay time. The dry run prints
plans; the replay executes them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nmig.errors import NmigError
from nmig.importer import limits
from nmig.importer.experiments import DEFAULT_MODE, experiment_name
from nmig.importer.report import Event
from nmig.importer.rules import NOT_IMPORTED_KINDS, SOURCE_CODE_NAMESPACE, Action, Mapping, map_attribute
from nmig.schema import Bundle, BundleError, EntityBundle, decode_atom, decode_float, encode_datetime
from nmig.schema.format import SERIES_TYPE_KIND

ConfigValue = float | int | bool | str | dt.datetime | list[str]


@dataclass(frozen=True)
class FileItem:
    target: str
    legacy_path: str
    content_hash: str
    size: int | None
    name: str  # a file name for the upload destination (safe: no separators)


@dataclass(frozen=True)
class SeriesItem:
    kind: str  # "float" | "string" | "file" (the bundle's parquet kind)
    legacy_path: str
    target: str
    points: int


@dataclass
class RunPlan:
    sys_id: str
    target_run_id: str
    experiment_name: str | None = None
    creation_time: dt.datetime | None = None
    configs: dict[str, ConfigValue] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group_tags: list[str] = field(default_factory=list)
    files: list[FileItem] = field(default_factory=list)
    series: list[SeriesItem] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # the legacy path of every attribute written, keyed by its 3.x path (for error attribution and the report)
    sources: dict[str, str] = field(default_factory=dict)
    # the legacy sys/id this run's custom_run_id equals (it yields that id: see target_run_id)
    claims_id_of: str | None = None
    _index: dict[tuple[str, str], SeriesItem] | None = field(default=None, repr=False, compare=False)

    def series_target(self, kind: str, legacy_path: str) -> SeriesItem | None:
        if self._index is None or len(self._index) != len(self.series):
            self._index = {(s.kind, s.legacy_path): s for s in self.series}
        return self._index.get((kind, legacy_path))

    def summary(self) -> dict[str, Any]:
        return {
            "run": self.sys_id,
            "target_run_id": self.target_run_id,
            "experiment_name": self.experiment_name,
            "creation_time": self.creation_time.isoformat() if self.creation_time else None,
            "configs": len(self.configs),
            "tags": len(self.tags),
            "group_tags": len(self.group_tags),
            "files": len(self.files),
            "series": [{"from": s.legacy_path, "to": s.target, "kind": s.kind, "points": s.points} for s in self.series],
            "remapped": {legacy: target for target, legacy in sorted(self.sources.items()) if legacy != target},
        }


def select_runs(entities: list[EntityBundle], patterns: Sequence[str]) -> list[EntityBundle]:
    """The runs `--runs` names (legacy sys/id, custom run id, or a regex matching one in full), as `nmig import`
    and `nmig verify` understand it; all runs when no pattern is given. NmigError for a bad regex or no match."""
    if not patterns:
        return entities
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise NmigError(f"--runs {pattern!r} is neither a run id nor a valid regular expression: {exc}") from None
    chosen = []
    for entity in entities:
        ids = {entity.sys_id, str(entity.custom_run_id or "")}
        if any(p in ids for p in patterns) or any(c.fullmatch(i) for c in compiled for i in ids if i):
            chosen.append(entity)
    if not chosen:
        raise NmigError(f"--runs {' '.join(patterns)} matches no run in the bundle")
    return chosen


class PlanRefused(Exception):
    """The entity cannot be imported at all (model, incomplete export, damaged bundle); the message says why."""


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: object, ext: object, fallback: str) -> str:
    """A plain file name for the upload destination: bundle names are data, never paths."""
    base = name if isinstance(name, str) and name else fallback
    base = _SAFE_NAME.sub("_", base.rsplit("/", 1)[-1]).strip("._") or "file"
    if isinstance(ext, str) and ext and not base.endswith("." + ext):
        base = f"{base}.{_SAFE_NAME.sub('_', ext)}"
    return base[:150]


def _safe_entry(entry: object) -> str | None:
    """A fileSet entry name usable inside an attribute path, or None (absolute, `..`, empty parts)."""
    if not isinstance(entry, str) or not entry or entry.startswith("/") or "\\" in entry or "\x00" in entry:
        return None
    parts = entry.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return entry


def _custom_run_id(entity: EntityBundle) -> str | None:
    custom = entity.custom_run_id
    if isinstance(custom, str) and custom:
        return custom
    custom_attr = entity.attribute("sys/custom_run_id")
    if custom_attr and isinstance(custom_attr.get("value"), str) and custom_attr["value"]:
        return str(custom_attr["value"])
    return None


_LEGACY_ID = re.compile(r"(?P<key>.+)-(?P<number>[0-9]+)")


def claims_a_legacy_id(custom: str, sys_id: str) -> bool:
    """Whether a custom run id may take another run's 3.x id: it has the shape of a legacy run id of the
    run's own project (`<KEY>-<n>`, the key being the one in the run's own sys/id) without being the run's
    own, or it ends the way a suffixed id of another run does (`~<KEY>-<n>`, see target_run_id)."""
    own = _LEGACY_ID.fullmatch(sys_id)
    if own is None or custom == sys_id:
        return False
    tail = custom.rsplit("~", 1)[-1] if "~" in custom else None
    for candidate in (custom, tail):
        other = _LEGACY_ID.fullmatch(candidate) if candidate else None
        if other is not None and other["key"] == own["key"] and candidate != sys_id:
            return True
    return False


def target_run_id(entity: EntityBundle) -> tuple[str, str | None]:
    """The run's 3.x run id before the limits (its custom_run_id, else its sys/id), and why it is not the
    custom id as it stands (None when it is).

    A legacy custom_run_id is free text and may equal another run's sys/id, which that run's 3.x id then is.
    The rule decides from the run's own data alone, so every run of the project gets the same id whatever
    else is imported, in whichever order, subset, shard or re-run: a custom_run_id shaped like one of the
    project's legacy ids (`<KEY>-<n>`, not the run's own), or ending like a suffixed one (`~<KEY>-<n>`), is
    suffixed with `~<its sys/id>` (sys/ids are unique in a project), and the run with that sys/id keeps it.
    So is a custom id that 3.x cannot hold as it stands (a "/", over 730 bytes), before it is fitted.
    No kept custom id can then equal another run's sys/id or suffixed id."""
    custom = _custom_run_id(entity)
    if custom is None:
        return entity.sys_id, None
    if claims_a_legacy_id(custom, entity.sys_id):
        return f"{custom}~{entity.sys_id}", (
            f"custom_run_id {custom!r} has the shape of a legacy run id of the project (it is, or may be, "
            f"another run's sys/id, which is that run's 3.x id)"
        )
    if limits.fit_run_id(custom) != custom:
        # Changed to fit 3.x ("/" replaced, shortened), the id could meet another run's custom id as it
        # stands ("a/b" and "a_b"): the run's own sys/id, unique in the project, keeps it apart.
        return f"{custom}~{entity.sys_id}", (
            f"custom_run_id {custom!r} is not a 3.x run id as it stands (a '/' or over "
            f"{limits.MAX_RUN_ID_BYTES} bytes); changed, it could meet another run's id"
        )
    return custom, None


def experiment_member(
    entity: EntityBundle, experiments: str = DEFAULT_MODE
) -> tuple[str, dt.datetime | None, str, str] | None:
    """(3.x experiment name, legacy creation time, legacy id, 3.x run id) of a run that plan_run puts in an
    experiment, else None: what deciding the experiment's head needs, read without planning the whole run."""
    if entity.kind != "run" or not entity.complete:
        return None
    name_attr = entity.attribute("sys/name")
    legacy_name = name_attr.get("value") if name_attr else None
    name = experiment_name(legacy_name, experiments)[0] if isinstance(legacy_name, str) else None
    if name is None:
        return None
    creation = entity.attribute("sys/creation_time")
    try:
        created = decode_atom("datetime", creation.get("value")) if creation else None
    except BundleError:
        created = None
    return name, created, entity.sys_id, limits.fit_run_id(target_run_id(entity)[0])


def _git_configs(value: Any) -> dict[str, ConfigValue]:
    """The native 3.x source fields from a legacy gitRef's raw properties (see the legacy client's
    create_run payload: commit{commitId, message, authorName, authorEmail, commitDate}, repositoryDirty,
    currentBranch, remotes[urls])."""
    if not isinstance(value, dict):
        return {}
    ns = SOURCE_CODE_NAMESPACE
    out: dict[str, ConfigValue] = {}
    commit = value.get("commit") if isinstance(value.get("commit"), dict) else {}
    for legacy_key, suffix in (
        ("commitId", "commit/commit_id"),
        ("message", "commit/message"),
        ("authorName", "commit/author_name"),
        ("authorEmail", "commit/author_email"),
    ):
        if isinstance(commit.get(legacy_key), str):
            out[f"{ns}/{suffix}"] = commit[legacy_key]
    date = commit.get("commitDate")
    if isinstance(date, str) and date:
        try:
            moment = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
            out[f"{ns}/commit/commit_date"] = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        except ValueError:
            out[f"{ns}/commit/commit_date"] = date
    elif isinstance(date, (int, float)) and not isinstance(date, bool):
        out[f"{ns}/commit/commit_date"] = dt.datetime.fromtimestamp(date / 1000, tz=dt.timezone.utc)
    if isinstance(value.get("currentBranch"), str):
        out[f"{ns}/branch"] = value["currentBranch"]
    if isinstance(value.get("repositoryDirty"), bool):
        out[f"{ns}/dirty"] = value["repositoryDirty"]
    remotes = value.get("remotes")
    if isinstance(remotes, list):
        # The legacy client keeps remote URLs only, without their names: the first is named origin (what git
        # calls the remote a clone comes from), the others by position.
        for index, remote in enumerate(remotes):
            url = remote.get("url") if isinstance(remote, dict) else remote
            name = remote.get("name") if isinstance(remote, dict) and isinstance(remote.get("name"), str) else None
            if isinstance(url, str):
                out[f"{ns}/remote/{name or ('origin' if index == 0 else f'remote_{index + 1}')}"] = url
    return out


def _artifact_configs(target: str, attribute: dict[str, Any]) -> dict[str, ConfigValue]:
    out: dict[str, ConfigValue] = {}
    if isinstance(attribute.get("hash"), str):
        out[f"{target}/hash"] = attribute["hash"]
    files = attribute.get("files") if isinstance(attribute.get("files"), list) else []
    out[f"{target}/files/count"] = len(files)
    for index, item in enumerate(files):
        if not isinstance(item, dict):
            continue
        base = f"{target}/files/{index}"
        for legacy_key, key in (("filePath", "file_path"), ("fileHash", "file_hash"), ("type", "type")):
            if isinstance(item.get(legacy_key), str):
                out[f"{base}/{key}"] = item[legacy_key]
        if isinstance(item.get("size"), int) and not isinstance(item.get("size"), bool):
            out[f"{base}/size"] = item["size"]
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        for key, meta_value in sorted(metadata.items()):
            if isinstance(key, str) and isinstance(meta_value, (str, int, float, bool)):
                out[f"{base}/metadata/{key}"] = meta_value if isinstance(meta_value, (str, bool)) else str(meta_value)
    return out


class _Planner:
    """Builds one RunPlan: each attribute goes to the handler of its Action (HANDLERS); the helpers here are
    what handlers share (claiming a 3.x path, adding a config, reporting)."""

    def __init__(self, plan: RunPlan, experiments: str = DEFAULT_MODE) -> None:
        self.plan = plan
        self.experiments = experiments  # how runs join 3.x experiments (nmig.importer.experiments)

    def event(self, path: str, case: str, detail: str) -> None:
        self.plan.events.append(Event(self.plan.sys_id, path, case, detail))

    def claim(self, target: str, legacy_path: str) -> str | None:
        """The 3.x path to write (shortened if too long), or None when another attribute already has it."""
        plan = self.plan
        fitted = limits.fit_attribute_path(target)
        if fitted != target:
            self.event(legacy_path, "path_shortened", limits.path_shortened_detail(fitted))
        if fitted in plan.sources:
            self.event(legacy_path, "path_collision", f"3.x path {fitted!r} is already written from {plan.sources[fitted]!r}; not written")
            return None
        plan.sources[fitted] = legacy_path
        return fitted

    def add_config(self, target: str, legacy_path: str, value: ConfigValue) -> None:
        path = self.claim(target, legacy_path)
        if path is None:
            return
        if isinstance(value, dt.datetime) and not limits.datetime_in_range(value):
            text = encode_datetime(value)
            self.event(legacy_path, "datetime_out_of_range", limits.datetime_out_of_range_detail(text, path))
            value = text
        self.plan.configs[path] = value


@dataclass(frozen=True)
class _Attribute:
    """One legacy attribute of the bundle, with the mapping's decision for it."""

    path: str
    legacy_type: str
    mapping: Mapping
    raw: dict[str, Any]  # the manifest entry

    @property
    def value(self) -> Any:
        return self.raw.get("value")


def _config(p: _Planner, a: _Attribute) -> None:
    value = decode_atom(a.legacy_type, a.value)
    if value is None:
        p.event(a.path, "empty_value", "attribute has no value; not written")
    else:
        p.add_config(a.mapping.target, a.path, value)


def _string_set_config(p: _Planner, a: _Attribute) -> None:
    p.add_config(a.mapping.target, a.path, sorted(str(v) for v in a.raw.get("values") or []))


def _number(a: _Attribute) -> Any:
    return decode_float(a.value) if a.legacy_type == "float" else a.value


def _float_seconds_config(p: _Planner, a: _Attribute) -> None:
    seconds = _number(a)
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        p.add_config(a.mapping.target, a.path, float(seconds))
    else:
        p.event(a.path, "malformed", f"{a.legacy_type} value is not a number; not written")


def _int_bytes_config(p: _Planner, a: _Attribute) -> None:
    number = _number(a)
    if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
        p.add_config(a.mapping.target, a.path, int(round(number)))
    else:
        p.event(a.path, "malformed", f"{a.legacy_type} value is not a size; not written")


def _run_name(p: _Planner, a: _Attribute) -> None:
    name = a.value
    if isinstance(name, str) and name:
        p.plan.experiment_name, unnamed = experiment_name(name, p.experiments)
        if p.plan.experiment_name is not None and p.plan.experiment_name != name:
            p.event(a.path, "name_shortened", limits.name_shortened_detail(p.plan.experiment_name))
        if unnamed is not None:
            p.event(a.path, "experiment_not_named", f"{unnamed}; a plain run, the name is in legacy_sys/name")
        if p.plan.experiment_name is not None:
            p.plan.sources["sys/name"] = a.path
    # also kept under legacy_sys/ so the full legacy name is always readable
    if isinstance(name, str):
        p.add_config("legacy_sys/name", a.path, name)


def _description(p: _Planner, a: _Attribute) -> None:
    if isinstance(a.value, str):
        p.add_config(a.mapping.target, a.path, a.value)


def _tags(p: _Planner, a: _Attribute) -> None:
    values = sorted(str(v) for v in a.raw.get("values") or [])
    (p.plan.tags if a.mapping.action is Action.TAGS else p.plan.group_tags).extend(values)
    p.plan.sources[a.mapping.target] = a.path


def _series(p: _Planner, a: _Attribute) -> None:
    points = int(a.raw.get("points") or 0)
    if points == 0:
        p.event(a.path, "empty_series", f"{a.legacy_type} without points: 3.x creates a series with its first point; not created")
        return
    target = p.claim(a.mapping.target, a.path)
    if target is not None:
        p.plan.series.append(SeriesItem(SERIES_TYPE_KIND[a.legacy_type], a.path, target, points))


def _file(p: _Planner, a: _Attribute) -> None:
    info = a.raw.get("file") if isinstance(a.raw.get("file"), dict) else {}
    target = p.claim(a.mapping.target, a.path)
    if target is not None:
        name = safe_file_name(info.get("name"), info.get("ext"), a.path)
        p.plan.files.append(FileItem(target, a.path, str(info.get("hash")), info.get("size"), name))


def _fileset_entries(p: _Planner, a: _Attribute) -> None:
    for entry in a.raw.get("entries") or []:
        entry_name = _safe_entry(entry.get("entry") if isinstance(entry, dict) else None)
        if entry_name is None:
            shown = entry.get("entry") if isinstance(entry, dict) else entry
            p.event(a.path, "unsafe_entry", f"fileSet entry {str(shown)[:120]!r} is not a safe relative path; not written")
            continue
        target = p.claim(f"{a.mapping.target}/{entry_name}", f"{a.path}/{entry_name}")
        if target is not None:
            name = safe_file_name(entry_name, None, "file")
            p.plan.files.append(FileItem(target, a.path, str(entry.get("hash")), entry.get("size"), name))


def _source_code(p: _Planner, a: _Attribute) -> None:
    git = _git_configs(a.value)
    if not git:
        p.event(a.path, "malformed", "gitRef without readable commit data; not written")
    for target, value in git.items():
        p.add_config(target, a.path, value)


def _artifact_configs_of(p: _Planner, a: _Attribute) -> None:
    for target, value in _artifact_configs(a.mapping.target, a.raw).items():
        p.add_config(target, a.path, value)


def _report_only(p: _Planner, a: _Attribute) -> None:
    p.event(a.path, "not_written", f"{a.legacy_type}: {a.mapping.why}; value {a.value!r:.200}")


def _not_copied(p: _Planner, a: _Attribute) -> None:
    p.event(a.path, "not_copied", a.mapping.why)


def _skipped(p: _Planner, a: _Attribute) -> None:
    p.event(a.path, "skipped", a.mapping.why)


# What each Action does to the plan; a test keeps one handler for every Action.
HANDLERS: dict[Action, Callable[[_Planner, _Attribute], None]] = {
    Action.CONFIG: _config,
    Action.STRING_SET_CONFIG: _string_set_config,
    Action.FLOAT_SECONDS_CONFIG: _float_seconds_config,
    Action.INT_BYTES_CONFIG: _int_bytes_config,
    Action.RUN_NAME: _run_name,
    Action.DESCRIPTION: _description,
    Action.TAGS: _tags,
    Action.GROUP_TAGS: _tags,
    Action.METRIC: _series,
    Action.STRING_SERIES: _series,
    Action.FILE_SERIES: _series,
    Action.FILE: _file,
    Action.FILESET_ENTRIES: _fileset_entries,
    Action.SOURCE_CODE: _source_code,
    Action.ARTIFACT_CONFIGS: _artifact_configs_of,
    Action.REPORT_ONLY: _report_only,
    Action.NOT_COPIED: _not_copied,
    Action.SKIPPED: _skipped,
}


# The 3.x run that holds the legacy project's own metadata (docs/mapping.md, "Project metadata").
PROJECT_RUN_ID = "nmig-legacy-project"
PROJECT_ITEM = "(project)"  # what the import report and verify name it by, in place of a legacy run id
_PROJECT_SOURCE_FIELDS = ("workspace", "project", "key", "visibility", "description", "url")
# Actions a project-level attribute cannot take the way a run's does (the run's name, tags, state): its value
# is kept as a config at the mapped path instead.
_SYS_ACTIONS_AS_CONFIGS = (Action.RUN_NAME, Action.DESCRIPTION, Action.TAGS, Action.GROUP_TAGS, Action.NOT_COPIED)
_PROJECT_ACTIONS = (Action.CONFIG, Action.STRING_SET_CONFIG, Action.FLOAT_SECONDS_CONFIG, Action.INT_BYTES_CONFIG,
                    Action.SOURCE_CODE, Action.ARTIFACT_CONFIGS, Action.REPORT_ONLY, Action.SKIPPED)


def plan_project(info: dict[str, Any]) -> RunPlan | None:
    """The plan of the project-metadata run: the legacy project's identity and description (export.json
    `source`) as `legacy_project/*` configs and the run's description, and its project-level attributes
    (`project_attributes`) mapped like a run's (`sys/*` -> `legacy_sys/*`, the rest at their paths), created
    with the project's creation time (`sys/creation_time`, else the import time). What
    cannot land (series and files of the project, which the export lists without content) is reported, each
    with its reason. None when the bundle says nothing about its project."""
    source = info.get("source") if isinstance(info.get("source"), dict) else {}
    attributes = info.get("project_attributes") if isinstance(info.get("project_attributes"), list) else []
    if not attributes and not (isinstance(source.get("description"), str) and source["description"]):
        return None
    plan = RunPlan(sys_id=PROJECT_ITEM, target_run_id=PROJECT_RUN_ID)
    planner = _Planner(plan, "none")
    for name in _PROJECT_SOURCE_FIELDS:
        if isinstance(source.get(name), str) and source[name]:
            planner.add_config(f"legacy_project/{name}", f"export.json source.{name}", source[name])
    if isinstance(source.get("description"), str) and source["description"]:
        planner.add_config("sys/description", "export.json source.description", source["description"])
    for raw in attributes:
        path, legacy_type = (raw.get("path"), raw.get("type")) if isinstance(raw, dict) else (None, None)
        if not isinstance(path, str) or not isinstance(legacy_type, str):
            planner.event(str(path), "malformed", "project attribute without a path or type; not written")
            continue
        if "skipped" in raw:
            planner.event(path, "project_attribute_not_written", f"{legacy_type}: {raw.get('skipped')}")
            continue
        mapping = map_attribute(path, legacy_type)
        try:
            if mapping.action in _SYS_ACTIONS_AS_CONFIGS:
                target = "legacy_sys/" + path[len("sys/"):] if path.startswith("sys/") else path
                if legacy_type == "stringSet":
                    planner.add_config(target, path, sorted(str(v) for v in raw.get("values") or []))
                elif (value := decode_atom(legacy_type, raw.get("value"))) is not None:
                    planner.add_config(target, path, value)
            elif mapping.action in _PROJECT_ACTIONS:
                HANDLERS[mapping.action](planner, _Attribute(path, legacy_type, mapping, raw))
            else:
                planner.event(path, "project_attribute_not_written", f"{legacy_type}: the project-metadata run holds configs only")
        except BundleError as exc:
            planner.event(path, "malformed", f"{exc}; not written")
        # the run is created with the project's own creation time, when it has one 3.x can hold
        if path == "sys/creation_time" and isinstance(created := plan.configs.get("legacy_sys/creation_time"), dt.datetime):
            plan.creation_time = created
    return plan


MODEL_NAMESPACE = "model_registry"  # where a model or model version run keeps what the registry said


def models_with_their_model(bundle: Bundle) -> list[tuple[EntityBundle, EntityBundle | None]]:
    """Every model, then every model version with its model's entity (None when the bundle lacks it), for
    `--models-as-runs`: a version's plan copies its model's configs."""
    models = {entity.sys_id: entity for entity in bundle.entities("model")}
    out: list[tuple[EntityBundle, EntityBundle | None]] = [(model, None) for model in models.values()]
    for version in bundle.entities("model_version"):
        out.append((version, models.get(model_id_of(version))))
    return out


def model_id_of(entity: EntityBundle) -> str:
    """The legacy id of a model version's model (its sys/model_id; else its id without the version number)."""
    if entity.kind == "model":
        return entity.sys_id
    attribute = entity.attribute("sys/model_id")
    value = attribute.get("value") if attribute else None
    return value if isinstance(value, str) and value else entity.sys_id.rsplit("-", 1)[0]


def _as_model_run(planner: _Planner, entity: EntityBundle, model: RunPlan | None) -> None:
    """What makes a model or model version findable as a run (`--models-as-runs`): tags naming the model and
    the version, its kind, model id and stage as configs under model_registry/, and for a version its model's
    run id and configs (model_registry/model/<path>). It joins no experiment (its name stays in
    legacy_sys/name)."""
    plan = planner.plan
    plan.experiment_name = None
    plan.sources.pop("sys/name", None)
    model_id = model_id_of(entity)
    ns = MODEL_NAMESPACE
    plan.tags = sorted({*plan.tags, f"model:{model_id}"} | ({f"model_version:{entity.sys_id}"} if entity.kind == "model_version" else set()))
    planner.add_config(f"{ns}/kind", "sys/id", entity.kind)
    planner.add_config(f"{ns}/model_id", "sys/model_id", model_id)
    if entity.kind == "model_version":
        stage = entity.attribute("sys/stage")
        if stage and isinstance(stage.get("value"), str):
            planner.add_config(f"{ns}/stage", "sys/stage", stage["value"])
        if model is not None:
            planner.add_config(f"{ns}/model_run_id", "sys/model_id", model.target_run_id)
            for path, value in sorted(model.configs.items()):
                if not path.startswith(f"{ns}/") and not path.startswith("sys/"):
                    planner.add_config(f"{ns}/model/{path}", f"model {model_id}: {path}", value)


def plan_run(
    entity: EntityBundle, experiments: str = DEFAULT_MODE, models_as_runs: bool = False, model: RunPlan | None = None
) -> RunPlan:
    """The plan for one run, or PlanRefused with the reason. `experiments`: how runs join 3.x experiments
    (nmig.importer.experiments.MODES). With `models_as_runs` a model or model version is planned as a run
    too (`model`: a version's model, planned first)."""
    if entity.kind in NOT_IMPORTED_KINDS and not models_as_runs:
        raise PlanRefused(NOT_IMPORTED_KINDS[entity.kind])
    if not entity.complete:
        raise PlanRefused(f"incomplete in the bundle: {entity.incomplete_reason}")
    sys_id = entity.sys_id
    legacy_run_id, claimed = target_run_id(entity)
    plan = RunPlan(sys_id=sys_id, target_run_id=limits.fit_run_id(legacy_run_id))
    planner = _Planner(plan, experiments)
    if claimed is not None:
        plan.claims_id_of = _custom_run_id(entity)
        planner.event("sys/custom_run_id", "run_id_adjusted", f"{claimed}: run id {plan.target_run_id[:80]!r}")
    elif plan.target_run_id != legacy_run_id:
        planner.event("sys/custom_run_id", "run_id_adjusted", f"run id {legacy_run_id[:80]!r} -> {plan.target_run_id[:80]!r}")
    for skipped in entity.skipped:
        planner.event(str(skipped.get("path")), "skipped_at_export", f"{skipped.get('type')}: {skipped.get('reason')}")
    for attribute in entity.attributes:
        path = attribute.get("path")
        legacy_type = attribute.get("type")
        if not isinstance(path, str) or not isinstance(legacy_type, str):
            planner.event(str(path), "malformed", "attribute without a path or type; not written")
            continue
        mapping = map_attribute(path, legacy_type)
        try:
            HANDLERS[mapping.action](planner, _Attribute(path, legacy_type, mapping, attribute))
        except BundleError as exc:
            planner.event(path, "malformed", f"{exc}; not written")

    creation = entity.attribute("sys/creation_time")
    if creation is not None:
        try:
            plan.creation_time = decode_atom("datetime", creation.get("value"))
            if plan.creation_time is not None and not limits.datetime_in_range(plan.creation_time):
                planner.event(
                    "sys/creation_time",
                    "datetime_out_of_range",
                    f"creation time {encode_datetime(plan.creation_time)} is outside {limits.DATETIME_RANGE_TEXT}; "
                    "the run gets the import time (the legacy value is in legacy_sys/creation_time)",
                )
                plan.creation_time = None
        except BundleError as exc:
            planner.event("sys/creation_time", "malformed", f"{exc}; the run gets the import time")
    else:
        planner.event("sys/creation_time", "missing", "no legacy creation time; the run gets the import time")
    if entity.kind != "run":
        _as_model_run(planner, entity, model)
    return plan
