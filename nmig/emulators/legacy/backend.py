"""The legacy emulator's backend: the state of one 2.x service (a fixture's projects and objects, channels, zip
download requests) and its lookups and queries, raising typed errors that carry their wire codes.

Nothing here knows HTTP: the handlers (server.py) parse a request, call the backend, and hand what it returns
to the serialisers (wire.py); a `LegacyApiError` becomes the API's error body with its status and errorType.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from nmig.emulators.legacy.fixture import (
    Attribute,
    Container,
    FloatSeries,
    ImageSeries,
    LegacyFixture,
    LegacyProject,
    StringSeries,
    parse_attributes,
    parse_run,
)
from nmig.emulators.legacy.nql import NqlSyntaxError, compile_query

# ASSUMPTION: the real API caps one page of series values at 10,000 items (no evidence) and refuses
# offset + limit beyond 10,000 for leaderboard searches (the client's MAX_SERVER_OFFSET says the same).
MAX_PAGE_LIMIT = 10_000
MAX_LEADERBOARD_OFFSET = 10_000
# Ids handed out by the emulator (channels, download requests, organizations) are UUIDs (format uuid in
# both snapshots), derived from what they name so they are stable across restarts.
_ID_NAMESPACE = uuid.UUID("0b6c5f4e-26f0-4c1e-9f43-8a5f7a0f6d21")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x00".join(parts)))


class LegacyApiError(Exception):
    """An error answer of the 2.x API: HTTP `status` and the `errorType` the client maps to its exceptions."""

    status = 500
    error_type = "INTERNAL_ERROR"
    title: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LegacyApiError):
    status, error_type = 400, "BAD_REQUEST"


class QuerySyntaxError(BadRequest):
    title = "Syntax error"  # the client turns this title into NeptuneInvalidQueryException


class NotFound(LegacyApiError):
    status, error_type = 404, "NOT_FOUND"


class ProjectNotFound(NotFound):
    error_type = "PROJECT_NOT_FOUND"


class ExperimentNotFound(NotFound):
    error_type = "EXPERIMENT_NOT_FOUND"  # the client turns this into its "object not found" exception


def _sort_value(container: Container, name: str) -> Any:
    """The value leaderboard entries are ordered by; None (sorted last in either direction) when absent."""
    attr = container.attributes.get(name)
    if attr is None:
        return None
    value = attr.value
    if attr.type in ("int", "float"):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if attr.type in ("string", "experimentState", "datetime", "bool"):
        return value
    if attr.type == "floatSeries" and len(value.values):
        return float(value.values[-1])
    return None


_SEARCHES_KEPT = 8


class LegacyBackend:
    """One 2.x service's state over a fixture. Thread-safe: downloads are locked; the fixture changes only
    through the "changes" methods below (tests of a cut-over change the source between two exports), each of
    which swaps whole values in and drops the kept searches."""

    def __init__(self, fixture: LegacyFixture, *, zip_prepare_seconds: float = 0.0) -> None:
        self.fixture = fixture
        self.zip_prepare_seconds = zip_prepare_seconds
        self.organization_id = stable_id("organization", fixture.workspace)
        self._lock = threading.Lock()
        self._downloads: dict[str, tuple[str, str, float]] = {}  # id -> (container id, path, ready at)
        self._channels: dict[str, tuple[Container, Attribute]] = {}
        # The last few searches' ordered matches. A listing keeps one query for up to 10,000 rows and pages it by
        # offset, so without this every page filtered and sorted the whole project again: 100,000 runs listed
        # 1,000 at a time cost ~100 x 100,000 predicate calls and sorts. The fixture is read-only, so a kept
        # result never goes stale. Measured in benchmarks/bench_many_runs.py.
        self._searches: OrderedDict[tuple[Any, ...], list[Container]] = OrderedDict()
        self._projects: dict[str, LegacyProject] = {}
        self._containers: dict[str, Container] = {}
        for project in fixture.projects:
            self._projects[project.id] = project
            self._projects[project.qualified_name] = project
            for container in self.containers_of(project):
                self._register(container)

    def _register(self, container: Container) -> None:
        self._containers[container.id] = container
        self._containers[f"{container.project.qualified_name}/{container.sys_id}"] = container
        for attr in container.attributes.values():
            if attr.type == "imageSeries":
                attr.value.channel_id = stable_id("channel", container.id, attr.path)
                self._channels[attr.value.channel_id] = (container, attr)

    # ---- lookups -----------------------------------------------------------------------------------------
    @staticmethod
    def containers_of(project: LegacyProject) -> list[Container]:
        assert project.container is not None
        return [project.container, *project.runs, *project.models, *project.model_versions]

    def project(self, identifier: str | None) -> LegacyProject:
        """A project by UUID or `workspace/name`."""
        project = self._projects.get(identifier or "")
        if project is None:
            raise ProjectNotFound(f"project {identifier} not found")
        return project

    def container(self, container_id: str | None, *, project_allowed: bool = True) -> Container:
        """An object by UUID or `workspace/project/SYS-ID`."""
        container = self._containers.get(container_id or "")
        if container is None or (not project_allowed and container.kind == "project"):
            raise ExperimentNotFound(f"object {container_id} not found")
        return container

    def attribute(self, container_id: str | None, path: str | None, *kinds: str) -> Attribute:
        attr = self.container(container_id).attributes.get(path or "")
        if attr is None or attr.type not in kinds:
            raise NotFound(f"attribute {path!r} of type {'/'.join(kinds)} not found")
        return attr

    def channel(self, channel_id: str) -> ImageSeries:
        found = self._channels.get(channel_id)
        if found is None:
            raise NotFound(f"no channel {channel_id}")
        return found[1].value

    def projects(self, workspace: str | None, term: str) -> list[LegacyProject]:
        if workspace and workspace != self.fixture.workspace:
            return []
        return [p for p in self.fixture.projects if term.lower() in p.name.lower()]

    def artifact_files(self, project: LegacyProject, artifact_hash: str) -> list[dict[str, Any]]:
        for container in self.containers_of(project):
            for attr in container.attributes.values():
                if attr.type == "artifact" and attr.value["hash"] == artifact_hash:
                    return list(attr.value["files"])
        raise NotFound(f"artifact {artifact_hash} not found")

    # ---- changes (what users do to a 2.x project between two exports; for tests) --------------------------
    def _touched(self, container: Container) -> None:
        """What the service does on every change of an object: sys/modification_time moves forward (by at least
        a millisecond, the precision it is served with), and listings see the change."""
        before = container.attributes.get("sys/modification_time")
        now = datetime.now(timezone.utc)
        if before is not None and isinstance(before.value, datetime) and now <= before.value:
            now = before.value + timedelta(milliseconds=1)
        container.attributes["sys/modification_time"] = Attribute("sys/modification_time", "datetime", now)
        with self._lock:
            self._searches.clear()

    def set_attributes(self, object_key: str, attributes: dict[str, Any]) -> None:
        """Set (add or replace) attributes of an object (`workspace/project/SYS-ID`), given in the fixture
        format: a changed config, a new tag set, a series with an earlier point altered."""
        container = self.container(object_key, project_allowed=False)
        parsed = parse_attributes(attributes, f"change of {object_key}")
        container.attributes.update(parsed)
        self._register(container)
        self._touched(container)

    def append_points(
        self, object_key: str, path: str, steps: list[float], values: list[Any], timestamps: list[int]
    ) -> None:
        """Points logged after the last one of a float or string series (the usual change of a live run)."""
        container = self.container(object_key, project_allowed=False)
        attr = self.attribute(object_key, path, "floatSeries", "stringSeries")
        old = attr.value
        new_steps = np.concatenate([old.steps, np.asarray(steps, dtype=np.float64)])
        new_stamps = np.concatenate([old.timestamps, np.asarray(timestamps, dtype=np.int64)])
        if attr.type == "floatSeries":
            new_values = np.concatenate([old.values, np.asarray(values, dtype=np.float64)])
            attr.value = FloatSeries(new_steps, new_values, new_stamps)  # a new object: its stats are recomputed
        else:
            attr.value = StringSeries(new_steps, [*old.values, *values], new_stamps)
        self._touched(container)

    def add_run(self, project_name: str, run: dict[str, Any]) -> str:
        """A new run (fixture format) at the end of the project's runs; returns its sys/id."""
        project = self.project(project_name)
        container = parse_run(run, project, len(project.runs) + 1)
        project.runs.append(container)
        self._register(container)
        self._touched(container)
        return container.sys_id

    def trash(self, object_key: str) -> None:
        """Move an object to the trash: listings without trashed objects leave it out from now on."""
        container = self.container(object_key, project_allowed=False)
        container.attributes["sys/trashed"] = Attribute("sys/trashed", "bool", True)
        self._touched(container)

    # ---- series ------------------------------------------------------------------------------------------
    def window(
        self, total: int, limit: int, offset: int = 0, steps: np.ndarray | None = None, skip_to_step: float | None = None
    ) -> tuple[int, int]:
        """[start, stop) of a page: from `offset`, or (by step) from the first point at or after `skip_to_step`.

        ASSUMPTION: skipToStep is inclusive (the first point returned may have exactly that step). No evidence;
        a reader that drops points at or before the last step it has reads an inclusive or exclusive server
        alike.
        """
        if steps is not None and skip_to_step is not None:
            offset = int(np.searchsorted(steps, skip_to_step, "left"))
        if offset < 0 or limit < 0:
            raise BadRequest("need offset >= 0 and limit >= 0")
        return offset, min(total, offset + limit)

    # ---- FileSet zips ------------------------------------------------------------------------------------
    def prepare_zip(self, container_id: str | None, path: str | None) -> str:
        attr = self.attribute(container_id, path, "fileSet")
        download_id = str(uuid.uuid4())
        with self._lock:
            self._downloads[download_id] = (container_id or "", attr.path, time.monotonic() + self.zip_prepare_seconds)
        return download_id

    def zip_ready(self, download_id: str | None) -> bool:
        """Whether a requested zip is prepared. ASSUMPTION: how long the real service takes is not known;
        `zip_prepare_seconds` simulates it. No evidence.
        """
        with self._lock:
            found = self._downloads.get(download_id or "")
        if found is None:
            raise NotFound(f"no download request {download_id}")
        return time.monotonic() >= found[2]

    def zip_source(self, download_id: str) -> Attribute:
        """The FileSet a prepared download is of (NotFound before it is ready)."""
        with self._lock:
            found = self._downloads.get(download_id)
        if found is None or time.monotonic() < found[2]:
            raise NotFound("no such download")
        return self.attribute(found[0], found[1], "fileSet")

    # ---- leaderboard -------------------------------------------------------------------------------------
    def children(self, project: LegacyProject, types: list[str]) -> list[Container]:
        pools = {"run": project.runs, "model": project.models, "modelVersion": project.model_versions}
        selected = [t for t in types if t in pools] if types else list(pools)
        return [c for t in selected for c in pools[t]]

    def search_entries(
        self,
        project: LegacyProject,
        types: list[str],
        query_text: str,
        sort_by: str | None,
        descending: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Container], int]:
        """(the page of matching objects, how many match) of a leaderboard search."""
        try:
            predicate = compile_query(query_text)
        except NqlSyntaxError as exc:
            raise QuerySyntaxError(str(exc)) from None
        if offset < 0 or limit < 0 or offset + limit > MAX_LEADERBOARD_OFFSET:
            raise BadRequest(f"need offset >= 0, limit >= 0 and offset + limit <= {MAX_LEADERBOARD_OFFSET}")
        key = (project.id, tuple(types), query_text, sort_by, descending)
        with self._lock:
            kept = self._searches.get(key)
            if kept is not None:
                self._searches.move_to_end(key)
        if kept is None:
            kept = self._search(project, types, predicate, sort_by, descending)
            with self._lock:
                self._searches[key] = kept
                while len(self._searches) > _SEARCHES_KEPT:
                    self._searches.popitem(last=False)
        return kept[offset : offset + limit], len(kept)

    def _search(
        self, project: LegacyProject, types: list[str], predicate: Any, sort_by: str | None, descending: bool
    ) -> list[Container]:
        matching = [c for c in self.children(project, types) if predicate(c)]
        if sort_by:
            present = [(_sort_value(c, sort_by), c) for c in matching]
            have = [pair for pair in present if pair[0] is not None]
            missing = [c for v, c in present if v is None]
            try:
                have.sort(key=lambda pair: pair[0], reverse=descending)
            except TypeError:  # mixed types under one name: order by their text, as a string column would
                have.sort(key=lambda pair: str(pair[0]), reverse=descending)
            matching = [c for _, c in have] + missing
        return matching
