"""What `nmig inspect` reports: a bundle summary and per-entity detail, as plain data and as text."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from nmig.schema.format import (
    ATOM_TYPES,
    KIND_FOLDERS,
    SERIES_TYPE_KIND,
    BundleError,
    is_content_hash,
)
from nmig.schema.reader import Bundle, EntityBundle
from nmig.schema.root import WorkspaceRoot
from nmig.schema.validate import validate_entity


def _progress(items: list[EntityBundle], enabled: bool) -> Iterable[EntityBundle]:
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc="checking", unit="entity", file=sys.stderr)


def _file_refs(entity: EntityBundle) -> dict[str, int]:
    """content hash -> original size, for every file the entity references (deduplicated); an invalid reference
    is no stored file (verify() reports it), and a series file that cannot be read adds nothing."""
    refs, _ = entity.file_references()
    return {h: _int(size) for h, size in refs.items() if is_content_hash(h)}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarize(bundle: Bundle, check: bool = False, progress: bool = False) -> dict[str, Any]:
    """The bundle summary; with check=True every entity is verified deeply and `problems` filled in."""
    info = bundle.info
    summary: dict[str, Any] = {
        "bundle": str(bundle.path),
        "format_version": info.get("format_version"),
        "nmig_version": info.get("nmig_version"),
        "source": info.get("source"),
        "selection": info.get("selection"),
        "started_at": info.get("started_at"),
        "finished_at": info.get("finished_at"),
        "project_attributes": len(info.get("project_attributes") or []),
        "entities": {},
        "complete": {},
        "incomplete": [],
        "attributes_by_type": {},
        "series_points": {"float": 0, "string": 0, "file": 0},
        "files": {"count": 0, "original_bytes": 0, "stored_bytes": 0},
        "skipped": [],
        "errors": 0,
        "strays": [],
        "checked": check,
        "problems": [],
    }
    by_type: Counter[str] = Counter()
    everything: list[EntityBundle] = []
    for kind, folder in KIND_FOLDERS.items():
        entities = bundle.entities(kind)
        everything += entities
        summary["entities"][kind] = len(entities)
        summary["complete"][kind] = sum(e.complete for e in entities)
        summary["strays"] += [f"{folder}/{name}" for name in bundle.strays(kind)]
        for entity in entities:
            if not entity.complete:
                summary["incomplete"].append(
                    {"kind": kind, "sys_id": entity.sys_id, "reason": entity.incomplete_reason}
                )
            for attribute in entity.attributes:
                type_ = str(attribute.get("type"))
                by_type[type_] += 1
                series_kind = SERIES_TYPE_KIND.get(type_)
                if series_kind is not None:
                    summary["series_points"][series_kind] += _int(attribute.get("points"))
            refs = _file_refs(entity)
            summary["files"]["count"] += len(refs)
            summary["files"]["original_bytes"] += sum(refs.values())
            summary["files"]["stored_bytes"] += entity.stored_bytes()
            summary["skipped"] += [
                {"kind": kind, "sys_id": entity.sys_id, "path": s.get("path"), "type": s.get("type"),
                 "reason": s.get("reason")}
                for s in entity.skipped
            ]
            summary["errors"] += len(entity.errors)
    summary["attributes_by_type"] = dict(sorted(by_type.items()))
    if check:
        for entity in _progress(everything, progress):
            summary["problems"] += validate_entity(entity)
        summary["problems"] += [f"{s}: not an entity folder (unsafe name or not a folder)" for s in summary["strays"]]
    return summary


def summarize_root(root: WorkspaceRoot, check: bool = False, progress: bool = False) -> dict[str, Any]:
    """The summary of every project bundle of a workspace root (`summarize` each), with totals; a project whose
    bundle cannot be read is listed with why (`error`) and counts as a problem."""
    projects: list[dict[str, Any]] = []
    totals = {"projects": len(root.projects), "entities": 0, "incomplete": 0, "problems": 0, "unreadable": 0}
    for entry in root.projects:
        item: dict[str, Any] = {"project": root.qualified(entry), "folder": entry.folder}
        try:
            item["summary"] = summarize(Bundle(root.bundle_dir(entry)), check=check, progress=progress)
        except BundleError as exc:
            item["error"] = str(exc)
            totals["unreadable"] += 1
            totals["problems"] += 1
        else:
            totals["entities"] += sum(item["summary"]["entities"].values())
            totals["incomplete"] += len(item["summary"]["incomplete"])
            totals["problems"] += len(item["summary"]["problems"])
        projects.append(item)
    return {"root": str(root.path), "workspace": root.workspace, "checked": check, "projects": projects, "totals": totals}


def render_root_summary(report: dict[str, Any], limit: int = 20) -> str:
    """Each project's summary under a heading naming the legacy project and its folder, then the totals."""
    lines = [f"workspace root {report['root']} (workspace {report['workspace']}, {len(report['projects'])} project(s))"]
    for item in report["projects"]:
        lines.append(f"== {item['project']} in {item['folder']}/ ==")
        lines.append(render_summary(item["summary"], limit) if "summary" in item else f"cannot read: {item['error']}")
    t = report["totals"]
    lines.append(
        f"total: {t['projects']} project(s), {t['entities']} entities, {t['incomplete']} incomplete, "
        f"{t['unreadable']} unreadable" + (f", {t['problems']} problem(s)" if report["checked"] else "")
    )
    return "\n".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_entity(entity: EntityBundle, check: bool = False) -> dict[str, Any]:
    """One entity in detail: ids, state, every attribute with a short value, skipped items, errors."""
    manifest = entity.manifest
    attributes = []
    for attribute in entity.attributes:
        type_ = str(attribute.get("type"))
        if type_ in ATOM_TYPES:
            shown = attribute.get("value")
        elif type_ == "stringSet":
            shown = attribute.get("values")
        elif type_ in SERIES_TYPE_KIND:
            shown = {"points": attribute.get("points"), "last_step": attribute.get("last_step")}
            if SERIES_TYPE_KIND[type_] == "file":
                shown.pop("last_step")
        elif type_ == "file":
            shown = attribute.get("file")
        elif type_ == "fileSet":
            entries = attribute.get("entries") or []
            shown = {"entries": len(entries), "bytes": sum(_int(e.get("size")) for e in entries if isinstance(e, dict))}
        elif type_ == "artifact":
            shown = {"hash": attribute.get("hash"), "files": len(attribute.get("files") or [])}
        else:
            shown = attribute.get("value")
        attributes.append({"path": attribute.get("path"), "type": type_, "value": shown})
    refs = _file_refs(entity)
    detail: dict[str, Any] = {
        "kind": entity.kind,
        "sys_id": entity.sys_id,
        "custom_run_id": manifest.get("custom_run_id"),
        "source_url": manifest.get("source_url"),
        "modification_time": manifest.get("modification_time"),
        "exported_at": manifest.get("exported_at"),
        "complete": entity.complete,
        "incomplete_reason": entity.incomplete_reason,
        "attributes": attributes,
        "files": {"count": len(refs), "original_bytes": sum(refs.values()), "stored_bytes": entity.stored_bytes()},
        "skipped": entity.skipped,
        "errors": entity.errors,
        "checked": check,
        "problems": validate_entity(entity) if check else list(entity.problems),
    }
    return detail


def find_entity(bundle: Bundle, sys_id: str) -> EntityBundle:
    """The entity with this id, looked up among runs, then models, then model versions."""
    for kind in KIND_FOLDERS:
        try:
            return bundle.entity(kind, sys_id)
        except BundleError:
            continue
    raise BundleError(f"no run, model or model version {sys_id!r} in bundle {bundle.path}")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render_summary(summary: dict[str, Any], limit: int = 20) -> str:
    source = summary.get("source") or {}
    lines = [
        f"bundle {summary['bundle']} (format {summary['format_version']}, nmig {summary['nmig_version']})",
        f"source: {source.get('workspace', '?')}/{source.get('project', '?')}"
        + (f" ({source['url']})" if source.get("url") else ""),
        f"exported: {summary['started_at'] or '?'} .. {summary['finished_at'] or 'unfinished'}",
    ]
    names = {"run": "runs", "model": "models", "model_version": "model versions"}
    lines.append(
        "entities: "
        + ", ".join(
            f"{summary['entities'][k]} {names[k]} ({summary['complete'][k]} complete)" for k in summary["entities"]
        )
    )
    lines.append(f"project attributes: {summary['project_attributes']}")
    by_type = summary["attributes_by_type"]
    lines.append(f"attributes: {sum(by_type.values())}" + ("" if not by_type else " (" + ", ".join(
        f"{t} {n}" for t, n in by_type.items()) + ")"))
    points = summary["series_points"]
    lines.append(f"series points: {points['float']} float, {points['string']} string, {points['file']} file")
    files = summary["files"]
    lines.append(
        f"files: {files['count']}, {_bytes(files['original_bytes'])} original, {_bytes(files['stored_bytes'])} stored"
    )
    lines.append(f"skipped items: {len(summary['skipped'])}")
    for item in summary["skipped"][:limit]:
        lines.append(f"  {item['sys_id']} {item['path']} ({item['type']}): {item['reason']}")
    if len(summary["skipped"]) > limit:
        lines.append(f"  ... and {len(summary['skipped']) - limit} more (--json lists all)")
    lines.append(f"errors: {summary['errors']}")
    lines.append(f"incomplete: {len(summary['incomplete'])}")
    for item in summary["incomplete"][:limit]:
        prefix = f"{item['kind']} {item['sys_id']}: "
        reason = str(item["reason"]).replace(prefix, "")
        lines.append(f"  {prefix}{reason}")
    if len(summary["incomplete"]) > limit:
        lines.append(f"  ... and {len(summary['incomplete']) - limit} more (--json lists all)")
    if summary["strays"] and not summary["checked"]:
        lines.append(f"not entity folders (ignored): {', '.join(summary['strays'][:limit])}")
    if summary["checked"]:
        lines += _render_problems(summary["problems"], limit)
    return "\n".join(lines)


def _render_problems(problems: list[str], limit: int) -> list[str]:
    if not problems:
        return ["check: every checksum and file verified, no problems"]
    lines = [f"check: {len(problems)} problem(s)"]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (--json lists all)")
    return lines


def render_entity(detail: dict[str, Any]) -> str:
    lines = [
        f"{detail['kind']} {detail['sys_id']}" + (f" (custom_run_id {detail['custom_run_id']})"
                                                   if detail["custom_run_id"] else ""),
        f"source: {detail['source_url'] or '?'}",
        f"modified: {detail['modification_time'] or '?'}, exported: {detail['exported_at'] or '?'}",
        "state: complete" if detail["complete"] else f"state: INCOMPLETE: {detail['incomplete_reason']}",
        f"attributes: {len(detail['attributes'])}",
    ]
    width = max((len(str(a["path"])) for a in detail["attributes"]), default=0)
    for attribute in detail["attributes"]:
        lines.append(f"  {str(attribute['path']).ljust(width)}  {attribute['type']:<15} {_short(attribute['value'])}")
    files = detail["files"]
    lines.append(
        f"files: {files['count']}, {_bytes(files['original_bytes'])} original, {_bytes(files['stored_bytes'])} stored"
    )
    lines.append(f"skipped: {len(detail['skipped'])}")
    lines += [f"  {s.get('path')} ({s.get('type')}): {s.get('reason')}" for s in detail["skipped"]]
    lines.append(f"errors: {len(detail['errors'])}")
    lines += [f"  {e.get('path') or '-'}: {e.get('message')}" for e in detail["errors"]]
    if detail["checked"]:
        lines += _render_problems(detail["problems"], limit=10**9)
    return "\n".join(lines)
