"""The legacy emulator's wire layer: how the 2.x API writes its models (shapes and serialisers), apart from
the state (backend.py) and the routing and request parsing (server.py).

Everything here is pure: a fixture's objects in, JSON text or a `Response` out. Field names and types are
those of the models spec.py declares (Neptune's published specs); the fast float-page formatter is here
because it is the hot path of a big export.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import numpy as np

from nmig.emulators.http import Response
from nmig.emulators.legacy.fixture import (
    Attribute,
    Container,
    FloatSeries,
    ImageSeries,
    LegacyProject,
    StringSeries,
)


def iso(moment: datetime) -> str:
    """Datetimes as the 2.x API writes them: UTC, milliseconds, `Z`."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8"))


# Assumption: non-finite floats travel as the JSON strings "NaN", "Infinity" and "-Infinity" (JSON has no
# literal for them, and the client parses with simplejson, which refuses bare NaN tokens). Typed getters turn
# the strings back into floats (bravado's `double` format calls float()); raw leaderboard rows keep the strings.
_FLOAT_WORDS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def wire_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _FLOAT_WORDS[value]


_FLOAT_POINT = '{{"step":{!r},"timestampMillis":{},"value":{!r}}}'.format


class _FloatText:
    """Formats as its JSON text under %r: a finite float as itself, a non-finite one as its JSON string."""

    def __init__(self, value: float | str) -> None:
        self.text = json.dumps(value)

    def __repr__(self) -> str:
        return self.text


def error_response(status: int, error_type: str, message: str, title: str | None = None) -> Response:
    """The 2.x API's error body; the client reads `errorType` (and the title "Syntax error" of a bad query)."""
    body = {"code": status, "errorType": error_type, "title": title or message, "message": message}
    return json_response(body, status)


def series_stats(series: FloatSeries) -> dict[str, Any]:
    if series.stats is None:
        series.stats = _compute_series_stats(series)
    return series.stats


def _compute_series_stats(series: FloatSeries) -> dict[str, Any]:
    if len(series.values) == 0:
        return {}
    values = series.values
    finite = values[~(values != values)]  # NaN-free view; infinities stay, as they would in a running stat
    stats: dict[str, Any] = {"last": wire_float(float(values[-1])), "lastStep": float(series.steps[-1])}
    if len(finite):
        stats.update(
            min=wire_float(float(finite.min())), max=wire_float(float(finite.max())), average=wire_float(float(finite.mean()))
        )
    return stats


def attribute_properties(attr: Attribute) -> dict[str, Any]:
    """The `<type>Properties` object of an attribute, as in getExperimentAttributes and leaderboard entries.

    Assumption for the shapes the client does not read itself: gitRef carries the commit, `currentBranch`,
    `remotes` and `repositoryDirty` (the field names the client sends when creating a run); imageSeries carries
    `lastStep`; fileSet its total `size`; empty series omit `last`/`lastStep`.
    """
    props: dict[str, Any] = {"attributeName": attr.path, "attributeType": attr.type}
    value = attr.value
    kind = attr.type
    if kind == "float":
        props["value"] = wire_float(value)
    elif kind in ("int", "bool", "string", "experimentState"):
        props["value"] = value
    elif kind == "datetime":
        props["value"] = iso(value)
    elif kind == "stringSet":
        props["values"] = list(value)
    elif kind == "floatSeries":
        props.update(series_stats(value))
    elif kind == "stringSeries":
        if value.values:
            props.update(last=value.values[-1], lastStep=float(value.steps[-1]))
    elif kind == "imageSeries":
        # The values of an image series are those of its channel (ImageSeriesAttributeDTO.channelId, required
        # in both snapshots), read with getChannelValues.
        props["channelId"] = value.channel_id
        known = value.steps[~np.isnan(value.steps)]
        if len(known):
            props["lastStep"] = float(known[-1])
    elif kind == "file":
        props.update(name=file_name(attr), ext=value["ext"], size=len(value["content"]))
    elif kind == "fileSet":
        props["size"] = sum(len(c) for c in value.values())
    elif kind == "artifact":
        props["hash"] = value["hash"]
    elif kind == "gitRef":
        props.update(
            commit=value["commit"],
            currentBranch=value["branch"],
            remotes=value["remotes"],
            repositoryDirty=value["dirty"],
        )
    elif kind == "notebookRef":
        props.update({k: v for k, v in value.items() if v is not None})
    return props


def file_name(attr: Attribute) -> str:
    # Assumption: a File's name is the last path segment plus its extension, as the client names downloads.
    base = attr.path.rsplit("/", 1)[-1]
    return f"{base}.{attr.value['ext']}" if attr.value["ext"] else base


def attribute_dto(attr: Attribute) -> dict[str, Any]:
    return {"name": attr.path, "type": attr.type, f"{attr.type}Properties": attribute_properties(attr)}


def content_type(content: bytes) -> str:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return "application/octet-stream"


def disposition(filename: str) -> str:
    # Header values are Latin-1 on the wire; the client reads `filename=` verbatim, so non-ASCII is %-encoded.
    return f'attachment; filename="{quote(filename, safe=" ._-()[]+,")}"'


def float_page_body(series: FloatSeries, start: int, stop: int) -> bytes:
    """FloatSeriesValuesDTO of points [start, stop) of `series`, as JSON text."""
    # The hot path of a big export: the page is formatted straight to JSON text, never through dicts.
    values, steps = series.values[start:stop], series.steps[start:stop]
    prefix = f'{{"totalItemCount":{len(series.values)},"values":['

    def plain(x: np.ndarray) -> bool:
        # What the fast formatting below reads back bit for bit (tested in tests/exporter): finite values
        # (the API sends the others as words) other than -0.0 (integral values are formatted through int64,
        # which has no negative zero).
        return bool(np.isfinite(x).all()) and not ((x == 0) & np.signbit(x)).any()

    # Below a few hundred points Arrow's fixed cost per call outweighs its speed per point (measured).
    if len(values) >= 256 and plain(values) and plain(steps):
        import pyarrow as pa
        import pyarrow.compute as pc

        def texts(x: np.ndarray) -> list[Any]:
            # Arrow's shortest round-trip formatting, in C++: about 4x faster than Python's repr per point.
            # Integral values get a ".0" (as with repr), so every JSON reader, Python's included, sees floats.
            # Returned as the parts that make up the text: an array, then maybe a literal suffix.
            integral = x == np.trunc(x)
            if not integral.any():
                return [pc.cast(pa.array(x), pa.string())]
            if np.abs(x[integral]).max() < 2.0**53:  # exact in int64
                whole = pc.cast(pa.array(np.where(integral, x, 0.0).astype(np.int64)), pa.string())
                if integral.all():
                    return [whole, ".0"]
                whole = pc.binary_join_element_wise(whole, ".0", "")
                return [pc.if_else(pa.array(integral), whole, pc.cast(pa.array(x), pa.string()))]
            # Huge integral values: Arrow writes some as plain digits, some with an exponent.
            text = pc.cast(pa.array(x), pa.string())
            digits_only = pc.match_substring_regex(text, r"^-?[0-9]+$")
            return [pc.if_else(digits_only, pc.binary_join_element_wise(text, ".0", ""), text)]

        stamps = pc.cast(pa.array(series.timestamps[start:stop]), pa.string())
        # Every point followed by a comma, all in one contiguous buffer: the body is that buffer minus the
        # last comma (no second pass to join them).
        points = pc.binary_join_element_wise(
            '{"step":', *texts(steps), ',"timestampMillis":', stamps, ',"value":', *texts(values), "},", ""
        )
        offsets = np.frombuffer(points.buffers()[1], dtype=np.int32)
        first, end = offsets[points.offset], offsets[points.offset + len(points)]
        body = memoryview(points.buffers()[2])[first : end - 1].tobytes()
        return prefix.encode() + body + b"]}"
    # Non-finite values go as the API's "NaN"/"Infinity" strings; -0.0 as repr's exact text (valid JSON).
    texts_ = values.tolist() if np.isfinite(values).all() else [_FloatText(wire_float(v)) for v in values.tolist()]
    steps_, stamps_ = steps.tolist(), series.timestamps[start:stop].tolist()
    body_ = ",".join(map(_FLOAT_POINT, steps_, stamps_, texts_))
    return f"{prefix}{body_}]}}".encode()


def warm_up() -> None:
    """Load what float_page_body's fast path first loads (Arrow's compute functions, and the pandas shim its
    first conversion imports: about 0.3 s of CPU), so a standalone emulator has paid it before its first
    client: a service is warm when clients come, and whichever client came first would otherwise pay it."""
    steps = np.arange(256, dtype=np.float64)  # integral, and values half of them not: every branch's kernels
    values = np.where(steps % 2 == 1, steps + 0.5, steps)
    float_page_body(FloatSeries(steps=steps, values=values, timestamps=np.arange(256, dtype=np.int64)), 0, 256)


def project_dto(project: LegacyProject, organization_id: str) -> dict[str, Any]:
    """ProjectDTO (getProject): no visibility or description in backend.json's model."""
    return {
        "id": project.id,
        "name": project.name,
        "organizationName": project.workspace,
        "organizationId": organization_id,
        "projectKey": project.key,
        "version": 2,
    }


def project_with_role_dto(project: LegacyProject, organization_id: str) -> dict[str, Any]:
    """ProjectWithRoleDTO (getProjectDetails, listProjects entries): `visibility` is ProjectVisibilityDTO."""
    return {
        **project_dto(project, organization_id),
        "visibility": project.visibility,
        "description": project.description,
    }


def experiment_dto(container: Container, organization_id: str) -> dict[str, Any]:
    project = container.project
    return {
        "id": container.id,
        "type": container.kind,
        "shortId": container.sys_id,
        "organizationName": project.workspace,
        "organizationId": organization_id,
        "projectName": project.name,
        "projectId": project.id,
        "trashed": container.trashed,
    }


def leaderboard_entry(container: Container, columns: set[Any]) -> dict[str, Any]:
    """An AttributesDTO row of a leaderboard search (all attributes, or those named in `columns`)."""
    attrs = container.attributes.values()
    return {
        "experimentId": container.id,
        "organizationName": container.project.workspace,
        "projectName": container.project.name,
        "type": container.kind,
        "attributes": [attribute_dto(a) for a in attrs if not columns or a.path in columns],
    }


def channel_values(series: ImageSeries, start: int, stop: int) -> dict[str, Any]:
    """LimitedChannelValuesDTO of an image series' channel: per point its timestamp, `x` (the step; absent when
    unknown) and `y.imageValue` (name and description). ASSUMPTION: channel values are in the order of the
    series' indexes; `imageUrl` and `thumbnailUrl` (in the model) are not sent. No evidence.
    """
    points = []
    for i in range(start, stop):
        point: dict[str, Any] = {"timestampMillis": int(series.timestamps[i])}
        if not math.isnan(series.steps[i]):
            point["x"] = float(series.steps[i])
        point["y"] = {"imageValue": {"name": series.names[i], "description": series.descriptions[i]}}
        points.append(point)
    return {"channelId": series.channel_id, "totalItemCount": len(series.steps), "values": points}


def string_points(series: StringSeries, start: int, stop: int, longest: int | None) -> dict[str, Any]:
    """StringSeriesValuesDTO of points [start, stop), values cut to `longest` characters when given."""
    values = series.values[start:stop]
    if longest is not None:
        values = [v[:longest] for v in values]
    steps, stamps = series.steps[start:stop].tolist(), series.timestamps[start:stop].tolist()
    return {
        "totalItemCount": len(series.values),
        "values": [
            {"step": s, "timestampMillis": t, "value": v} for s, t, v in zip(steps, stamps, values, strict=True)
        ],
    }


_ZIP_TIME = (2023, 1, 1, 0, 0, 0)


def file_set_listing(attr: Attribute, directory: str) -> list[dict[str, Any]] | None:
    """FileEntry items directly under `directory` of a FileSet (None: no such directory)."""
    prefix = directory.strip("/")
    prefix = prefix + "/" if prefix else ""
    children: dict[str, dict[str, Any]] = {}
    mtime = iso(datetime(*_ZIP_TIME, tzinfo=timezone.utc))
    for name, content in attr.value.items():
        if not name.startswith(prefix):
            continue
        head, sep, _ = name[len(prefix) :].partition("/")
        entry = children.setdefault(
            head, {"name": head, "size": 0, "mtime": mtime, "fileType": "directory" if sep else "file"}
        )
        entry["size"] += len(content)
    if prefix and not children:
        return None
    return list(children.values())


def file_set_zip(attr: Attribute) -> Response:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in attr.value.items():
            # Entry names go into the zip exactly as stored, hostile ones included: guarding is the reader's job.
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), content)
    filename = attr.path.rsplit("/", 1)[-1] + ".zip"
    return Response(
        200, buffer.getvalue(), content_type="application/zip", headers={"Content-Disposition": disposition(filename)}
    )


def artifact_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """ArtifactFiles: each file's metadata as the API lists it, [{key, value}]."""
    return {
        "files": [
            {
                **{k: v for k, v in entry.items() if k != "metadata"},
                "metadata": [{"key": k, "value": str(v)} for k, v in entry.get("metadata", {}).items()],
            }
            for entry in files
        ]
    }
