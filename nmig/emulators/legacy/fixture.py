"""Loading and validating legacy fixtures (format v1, docs/legacy-fixture-format.md) into served objects.

Series are kept in numpy arrays, not lists of Python objects, so a 10,000,000-point series costs ~240 MB at
most and a page of it is a cheap slice. A malformed fixture is refused as a whole with a message naming the
project, the object and the attribute path at fault.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nmig.errors import NmigError

FIXTURE_VERSION = 1

ATOM_TYPES = {"float", "int", "bool", "string", "datetime", "experimentState"}
ALL_TYPES = ATOM_TYPES | {
    "stringSet",
    "floatSeries",
    "stringSeries",
    "imageSeries",
    "file",
    "fileSet",
    "artifact",
    "gitRef",
    "notebookRef",
}
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_VISIBILITIES = {"priv", "pub", "workspace"}  # backend.json ProjectVisibilityDTO
# The project container's sys/visibility for each ProjectVisibilityDTO value.
PROJECT_SYS_VISIBILITY = {"priv": "private", "pub": "public", "workspace": "workspace"}
# Default creation times: deterministic, one minute apart in list order, so sorting by time is meaningful.
_DEFAULT_EPOCH = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
_DEFAULT_OWNER = "emulator-user"
# Every object id derives from this namespace and the object's qualified name, so ids are stable across restarts.
_ID_NAMESPACE = uuid.UUID("6f1d2c1e-8d0b-4a53-9b7e-3f0c5a2b9e11")


# The sys/* attributes every run, model and model version has on a real 2.x service, with their types.
STANDARD_SYS_TYPES = {
    "sys/id": "string",
    "sys/name": "string",
    "sys/description": "string",
    "sys/creation_time": "datetime",
    "sys/modification_time": "datetime",
    "sys/ping_time": "datetime",
    "sys/owner": "string",
    "sys/state": "experimentState",
    "sys/tags": "stringSet",
    "sys/group_tags": "stringSet",
    "sys/trashed": "bool",
    "sys/failed": "bool",
    "sys/size": "float",
    "sys/running_time": "float",
    "sys/monitoring_time": "int",
}


class FixtureError(NmigError):
    """The fixture cannot be served; the message names the project, object and path at fault."""


@dataclass
class FloatSeries:
    steps: np.ndarray  # float64
    values: np.ndarray  # float64
    timestamps: np.ndarray  # int64, epoch milliseconds
    # last/min/max/average as served, computed once (a 10M-point series is served many times)
    stats: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass
class StringSeries:
    steps: np.ndarray
    values: list[str]
    timestamps: np.ndarray


@dataclass
class ImageSeries:
    steps: np.ndarray
    timestamps: np.ndarray
    names: list[str]
    descriptions: list[str]
    contents: list[bytes]
    channel_id: str = ""  # the series' channel (getChannelValues), set by the server that serves it


@dataclass
class Attribute:
    """One attribute as served. `value` holds the type's payload (see `_parse_attribute`)."""

    path: str
    type: str
    value: Any


@dataclass
class Container:
    """A run, model, model version or the project itself: something with attributes and an id."""

    kind: str  # "run" | "model" | "modelVersion" | "project"
    sys_id: str
    id: str  # UUID
    project: LegacyProject
    attributes: dict[str, Attribute] = field(default_factory=dict)

    @property
    def trashed(self) -> bool:
        attr = self.attributes.get("sys/trashed")
        return bool(attr and attr.type == "bool" and attr.value)


@dataclass
class LegacyProject:
    workspace: str
    name: str
    key: str
    visibility: str
    description: str
    id: str
    container: Container | None = None  # project-level attributes
    runs: list[Container] = field(default_factory=list)
    models: list[Container] = field(default_factory=list)
    model_versions: list[Container] = field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return f"{self.workspace}/{self.name}"


@dataclass
class LegacyFixture:
    workspace: str
    projects: list[LegacyProject]


def load_fixture(source: str | Path | dict[str, Any]) -> LegacyFixture:
    """Parse and validate a fixture given as a path to JSON or an already-parsed dict."""
    if isinstance(source, dict):
        raw = source
        origin = "fixture"
    else:
        origin = f"fixture {source}"
        try:
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise FixtureError(f"{origin}: cannot read: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise FixtureError(f"{origin}: not valid UTF-8 JSON: {exc}") from None
    return _parse_fixture(raw, origin)


def _fail(where: str, message: str) -> FixtureError:
    return FixtureError(f"{where}: {message}")


def _parse_fixture(raw: Any, origin: str) -> LegacyFixture:
    if not isinstance(raw, dict):
        raise _fail(origin, "the top level must be a JSON object")
    if raw.get("fixture_version") != FIXTURE_VERSION:
        raise _fail(origin, f"fixture_version must be {FIXTURE_VERSION}, got {raw.get('fixture_version')!r}")
    workspace = raw.get("workspace")
    if not isinstance(workspace, str) or not workspace or "/" in workspace:
        raise _fail(origin, "workspace must be a non-empty string without '/'")
    projects_raw = raw.get("projects")
    if not isinstance(projects_raw, list):
        raise _fail(origin, "projects must be a list")
    fixture = LegacyFixture(workspace=workspace, projects=[])
    seen: set[str] = set()
    for index, project_raw in enumerate(projects_raw):
        project = _parse_project(project_raw, workspace, f"{origin}: project #{index + 1}")
        if project.name in seen:
            raise _fail(f"{origin}: project {project.name!r}", "duplicate project name")
        seen.add(project.name)
        fixture.projects.append(project)
    return fixture


def _parse_project(raw: Any, workspace: str, where: str) -> LegacyProject:
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail(where, "name must be a non-empty string without '/'")
    where = f"{where.rsplit(': project #', 1)[0]}: project {name!r}"
    key = raw.get("key")
    if not isinstance(key, str) or not key.isalnum() or not key.isupper() and not key.isdigit():
        raise _fail(where, f"key must be upper-case letters and digits, got {key!r}")
    visibility = raw.get("visibility", "priv")
    if visibility not in _VISIBILITIES:
        raise _fail(where, f"visibility must be one of {sorted(_VISIBILITIES)}, got {visibility!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, "description must be a string")
    project = LegacyProject(
        workspace=workspace,
        name=name,
        key=key,
        visibility=visibility,
        description=description,
        id=_object_id(f"{workspace}/{name}"),
    )
    project.container = Container("project", key, project.id, project)
    project.container.attributes = _parse_attributes(
        raw.get("attributes", {}), f"{where}, project attributes"
    )
    # A real 2.x project container has sys/id = the project key and sys/visibility "public" / "private"
    # (Neptune's own 2.x-to-3.x copier, scale-examples runs_migrator.py, reads both from it).
    # ASSUMPTION: a workspace-visible project says "workspace" there, and sys/description holds the
    # project's description. No evidence.
    _fill_defaults(
        project.container,
        {
            "sys/id": key,
            "sys/name": name,
            "sys/visibility": PROJECT_SYS_VISIBILITY[visibility],
            "sys/description": description,
        },
        minimal=True,
    )

    for field_name in ("runs", "models"):
        if not isinstance(raw.get(field_name, []), list):
            raise _fail(where, f"{field_name} must be a list")
    for n, run_raw in enumerate(raw.get("runs", []), start=1):
        sys_id = f"{key}-{n}"
        project.runs.append(_parse_container(run_raw, "run", sys_id, project, f"{where}, run {sys_id}", n))
    seen_models: set[str] = set()
    for index, model_raw in enumerate(raw.get("models", [])):
        model_where = f"{where}, model #{index + 1}"
        if not isinstance(model_raw, dict):
            raise _fail(model_where, "must be an object")
        model_key = model_raw.get("key")
        if not isinstance(model_key, str) or not model_key.isalnum() or model_key.upper() != model_key:
            raise _fail(model_where, f"key must be upper-case letters and digits, got {model_key!r}")
        if model_key in seen_models:
            raise _fail(model_where, f"duplicate model key {model_key!r}")
        seen_models.add(model_key)
        model_id = f"{key}-{model_key}"
        model = _parse_container(
            model_raw, "model", model_id, project, f"{where}, model {model_id}", index + 1
        )
        project.models.append(model)
        versions = model_raw.get("versions", [])
        if not isinstance(versions, list):
            raise _fail(f"{where}, model {model_id}", "versions must be a list")
        for n, version_raw in enumerate(versions, start=1):
            version_id = f"{model_id}-{n}"
            version = _parse_container(
                version_raw, "modelVersion", version_id, project, f"{where}, model version {version_id}", n
            )
            _fill_defaults(version, {"sys/model_id": model_id, "sys/stage": "none"}, minimal=True)
            project.model_versions.append(version)
    return project


def parse_run(raw: Any, project: LegacyProject, ordinal: int) -> Container:
    """One run given in the fixture format, as the `ordinal`-th run of `project` (sys/id KEY-ordinal)."""
    sys_id = f"{project.key}-{ordinal}"
    return _parse_container(raw, "run", sys_id, project, f"{project.qualified_name}, run {sys_id}", ordinal)


def parse_attributes(raw: Any, where: str) -> dict[str, Attribute]:
    """Attributes given in the fixture format (a FixtureError names the path at fault)."""
    return _parse_attributes(raw, where)


def _object_id(qualified_name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, qualified_name))


def _parse_container(
    raw: Any, kind: str, sys_id: str, project: LegacyProject, where: str, ordinal: int
) -> Container:
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object")
    container = Container(kind, sys_id, _object_id(f"{project.qualified_name}/{sys_id}"), project)
    container.attributes = _parse_attributes(raw.get("attributes", {}), where)
    given_id = container.attributes.get("sys/id")
    if given_id is not None and given_id.value != sys_id:
        raise _fail(
            f"{where}, attribute 'sys/id'",
            f"must be {sys_id!r} (ids follow list order), got {given_id.value!r}",
        )
    created = _DEFAULT_EPOCH + timedelta(minutes=ordinal)
    _fill_defaults(container, {"sys/id": sys_id, "sys/creation_time": created}, minimal=False)
    return container


def _fill_defaults(container: Container, base: dict[str, Any], *, minimal: bool) -> None:
    """Add the sys/* attributes a real 2.x object always has, unless the fixture gives them."""
    attrs = container.attributes
    defaults = dict(base)
    if not minimal:
        created = (
            attrs["sys/creation_time"].value if "sys/creation_time" in attrs else base["sys/creation_time"]
        )
        defaults.update(
            {
                "sys/name": "Untitled",
                "sys/description": "",
                "sys/modification_time": created,
                "sys/ping_time": created,
                "sys/owner": _DEFAULT_OWNER,
                "sys/state": "idle",
                "sys/tags": [],
                "sys/group_tags": [],
                "sys/trashed": False,
                "sys/failed": False,
                "sys/size": float(sum(stored_size(a) for a in attrs.values())),
                "sys/running_time": 0.0,
                "sys/monitoring_time": 0,
            }
        )
    for path, value in defaults.items():
        if path not in attrs:
            attrs[path] = Attribute(path, STANDARD_SYS_TYPES.get(path, "string"), value)


# ASSUMPTION: a run's sys/size counts what it stores, series points included, not its files alone; 24 bytes per
# float point (step, timestamp, value) and the UTF-8 bytes plus 16 per string point. The published specs give
# sys/size only as a float attribute of SystemAttributesDTO (leaderboard.json), with no definition (no evidence).
FLOAT_POINT_BYTES = 24
STRING_POINT_OVERHEAD = 16


def stored_size(attr: Attribute) -> int:
    """Bytes the attribute stores, as the emulator counts them into sys/size."""
    if isinstance(attr.value, FloatSeries):
        return FLOAT_POINT_BYTES * len(attr.value.steps)
    if isinstance(attr.value, StringSeries):
        return sum(len(v.encode("utf-8")) + STRING_POINT_OVERHEAD for v in attr.value.values)
    return content_size(attr)


def content_size(attr: Attribute) -> int:
    """Bytes of file content the attribute holds (0 for a type without files)."""
    if attr.type == "file":
        return len(attr.value["content"])
    if attr.type == "fileSet":
        return sum(len(c) for c in attr.value.values())
    if attr.type == "imageSeries":
        return sum(len(c) for c in attr.value.contents)
    return 0


def _parse_attributes(raw: Any, where: str) -> dict[str, Attribute]:
    if not isinstance(raw, dict):
        raise _fail(where, "attributes must be an object mapping paths to attributes")
    parsed: dict[str, Attribute] = {}
    for path, spec in raw.items():
        at = f"{where}, attribute {path!r}"
        if not path or path.startswith("/") or path.endswith("/") or "//" in path:
            raise _fail(at, "a path is non-empty '/'-separated names")
        if not isinstance(spec, dict):
            raise _fail(at, "must be an object with a 'type'")
        kind = spec.get("type")
        if kind not in ALL_TYPES:
            raise _fail(at, f"unknown type {kind!r}; known: {', '.join(sorted(ALL_TYPES))}")
        try:
            parsed[path] = Attribute(path, kind, _parse_value(kind, spec))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise _fail(at, f"bad {kind}: {detail}") from None
    # A path cannot be both an attribute and a namespace holding other attributes.
    for path in parsed:
        prefix = path + "/"
        clash = next((p for p in parsed if p.startswith(prefix)), None)
        if clash:
            raise _fail(f"{where}, attribute {path!r}", f"is also the namespace of {clash!r}")
    return parsed


def _float(value: Any) -> float:
    if isinstance(value, str):
        if value not in _FLOAT_WORDS:
            raise ValueError(f"float strings are 'NaN', 'Infinity', '-Infinity', got {value!r}")
        return _FLOAT_WORDS[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any, what: str = "value") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def _datetime(value: Any) -> datetime:
    text = _str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 datetime: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _float_array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "fiu":
            raise ValueError(f"{what} must be a 1-D numeric array")
        return values.astype(np.float64, copy=False)
    if not isinstance(values, list):
        raise ValueError(f"{what} must be a list")
    try:
        return (
            np.asarray(values, dtype=np.float64)
            if all(type(v) in (int, float) for v in values)
            else np.asarray([_float(v) for v in values], dtype=np.float64)
        )
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _timestamps(values: Any, count: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise ValueError("timestamps must be a 1-D integer array")
        array = values.astype(np.int64, copy=False)
    elif isinstance(values, list):
        array = np.asarray([_int(v) for v in values], dtype=np.int64) if values else np.zeros(0, np.int64)
    else:
        raise ValueError("timestamps must be a list of epoch milliseconds")
    if len(array) != count:
        raise ValueError(f"{count} steps but {len(array)} timestamps")
    return array


def _steps(spec: dict[str, Any]) -> np.ndarray:
    steps = _float_array(spec["steps"], "steps")
    if not np.isfinite(steps).all():
        raise ValueError("steps must be finite numbers")
    return steps


def _content(spec: dict[str, Any], what: str) -> bytes:
    if "content_base64" in spec:
        try:
            return base64.b64decode(_str(spec["content_base64"], "content_base64"), validate=True)
        except ValueError:
            raise ValueError(f"{what}: content_base64 is not valid base64") from None
    if "content_text" in spec:
        return _str(spec["content_text"], "content_text").encode("utf-8")
    raise ValueError(f"{what} needs content_base64 or content_text")


def _parse_value(kind: str, spec: dict[str, Any]) -> Any:
    """The payload of one attribute; raises KeyError/TypeError/ValueError on malformed input."""
    if kind == "float":
        return _float(spec["value"])
    if kind == "int":
        return _int(spec["value"])
    if kind == "bool":
        if not isinstance(spec["value"], bool):
            raise ValueError(f"expected true or false, got {spec['value']!r}")
        return spec["value"]
    if kind == "string":
        return _str(spec["value"])
    if kind == "datetime":
        return _datetime(spec["value"])
    if kind == "experimentState":
        if spec["value"] not in ("running", "idle"):
            raise ValueError(f"value must be 'running' or 'idle', got {spec['value']!r}")
        return spec["value"]
    if kind == "stringSet":
        values = spec["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError("values must be a list of strings")
        return list(dict.fromkeys(values))
    if kind == "floatSeries":
        steps = _steps(spec)
        values = _float_array(spec["values"], "values")
        if len(values) != len(steps):
            raise ValueError(f"{len(steps)} steps but {len(values)} values")
        return FloatSeries(steps, values, _timestamps(spec["timestamps"], len(steps)))
    if kind == "stringSeries":
        steps = _steps(spec)
        values = spec["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError("values must be a list of strings")
        if len(values) != len(steps):
            raise ValueError(f"{len(steps)} steps but {len(values)} values")
        return StringSeries(steps, values, _timestamps(spec["timestamps"], len(steps)))
    if kind == "imageSeries":
        # A null step: a point whose channel value has no `x` (PointValueDTO's x is optional in both snapshots),
        # so a reader cannot know its step. Kept as NaN here.
        raw_steps = spec["steps"]
        if not isinstance(raw_steps, list):
            raise ValueError("steps must be a list")
        steps = _float_array([math.nan if s is None else s for s in raw_steps], "steps")
        if np.isinf(steps).any():
            raise ValueError("steps must be finite numbers or null")
        n = len(steps)
        names, descriptions, contents = (
            spec.get("names", [""] * n),
            spec.get("descriptions", [""] * n),
            spec["contents_base64"],
        )
        for what, items in (("names", names), ("descriptions", descriptions), ("contents_base64", contents)):
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items) or len(items) != n:
                raise ValueError(f"{what} must be a list of {n} strings")
        decoded = [_content({"content_base64": c}, f"contents_base64[{i}]") for i, c in enumerate(contents)]
        return ImageSeries(steps, _timestamps(spec["timestamps"], n), names, descriptions, decoded)
    if kind == "file":
        return {"ext": _str(spec.get("ext", ""), "ext"), "content": _content(spec, "file")}
    if kind == "fileSet":
        files = spec["files"]
        if not isinstance(files, dict):
            raise ValueError("files must map relative paths to {content_text|content_base64}")
        result: dict[str, bytes] = {}
        for name, entry in files.items():
            if not name or not isinstance(entry, dict):
                raise ValueError(f"entry {name!r} must be a non-empty name mapped to an object")
            result[name] = _content(entry, f"entry {name!r}")
        return result
    if kind == "artifact":
        files = spec.get("files", [])
        if not isinstance(files, list):
            raise ValueError("files must be a list")
        for i, entry in enumerate(files):
            if not isinstance(entry, dict) or not isinstance(entry.get("filePath"), str):
                raise ValueError(f"files[{i}] must be an object with a filePath")
            if not isinstance(entry.get("metadata", {}), dict):
                raise ValueError(f"files[{i}].metadata must be an object")
        return {"hash": _str(spec["hash"], "hash"), "files": files}
    if kind == "gitRef":
        commit = spec["commit"]
        if not isinstance(commit, dict):
            raise ValueError("commit must be an object")
        for name in ("commitId", "message", "authorName", "authorEmail", "commitDate"):
            if name in commit and not isinstance(commit[name], str):
                raise ValueError(f"commit.{name} must be a string")
        if "commitDate" in commit:
            _datetime(commit["commitDate"])
        remotes = spec.get("remotes", [])
        if not isinstance(remotes, list) or not all(isinstance(r, str) for r in remotes):
            raise ValueError("remotes must be a list of strings")
        if not isinstance(spec.get("dirty", False), bool):
            raise ValueError("dirty must be true or false")
        return {
            "commit": dict(commit),
            "branch": spec.get("branch"),
            "remotes": remotes,
            "dirty": spec.get("dirty", False),
        }
    if kind == "notebookRef":
        result_ref = {}
        for name in ("notebookId", "notebookName", "checkpointId", "checkpointName"):
            if name in spec and spec[name] is not None and not isinstance(spec[name], str):
                raise ValueError(f"{name} must be a string")
            result_ref[name] = spec.get(name)
        return result_ref
    raise ValueError(f"unhandled type {kind}")  # pragma: no cover - ALL_TYPES is checked first
