"""`nmig export`: list what to export, skip what the bundle already holds, export the rest in parallel."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.atomic import FolderLock
from nmig.errors import NmigError, PartialFailure
from nmig.exporter.ahead import Ahead
from nmig.exporter.entity import (
    DEFAULT_PAGE_SIZE,
    LARGER_PAGE_SIZE,
    Counters,
    EntityExporter,
    describe,
    is_disk_full,
    with_retries,
)
from nmig.exporter.selection import Existing, RunMatcher, needs_export, validate_project
from nmig.exporter.source import EntityRef, LegacySource
from nmig.schema.format import (
    ATOM_TYPES,
    EXPORT_INFO,
    EXPORT_LOG,
    KIND_FOLDERS,
    PARTIAL_DIR,
    RAW_TYPES,
    BundleError,
    encode_atom,
    encode_datetime,
    safe_component,
)
from nmig.schema.store import BundleRoot, open_root
from nmig.sharding import Shard

# Entities in parallel: their time is mostly round trips and waits for the server (benchmarks/bench_faults.py,
# bench_latency.py); on loopback with no faults 8 is ~6% quicker (bench_export.py --scenarios many).
DEFAULT_MAX_WORKERS = 16
# A listing takes several requests the client does not retry, and without it there is no export at all.
LISTING_ATTEMPTS = 8


@dataclass
class ExportOptions:
    project: str | None  # "workspace/project" (checked by export_project)
    out: Path | str  # a folder, or a URL on object storage (nmig.schema.store)
    api_token: str | None
    query: str | None = None
    runs: tuple[str, ...] = ()
    include_trashed: bool = False
    models: bool = True
    max_workers: int = DEFAULT_MAX_WORKERS
    shard: Shard | None = None
    update: bool = False
    quiet: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    # Tried once, used when the server answers it in full (None: never ask for more than page_size).
    larger_page_size: int | None = LARGER_PAGE_SIZE
    # fsspec's options for an `out` URL (endpoint, credentials): never printed
    storage_options: dict[str, Any] | None = None
    # A whole workspace instead of one project (exporter/workspace.py): `out` is then the root of one bundle
    # per project, and these two regexes choose the projects by name.
    workspace: str | None = None
    projects: str | None = None
    exclude_projects: str | None = None


@dataclass
class ExportResult:
    exported: list[EntityRef] = field(default_factory=list)
    up_to_date: list[EntityRef] = field(default_factory=list)
    failed: list[tuple[EntityRef | None, str, str]] = field(default_factory=list)  # (ref, sys_id, reason)
    points: int = 0
    bytes: int = 0
    seconds: float = 0.0
    hedged: int = 0  # pages asked for twice at a series' tail (entity.EntityExporter._pages)

    def summary(self) -> str:
        return (
            f"exported {len(self.exported)}, already complete {len(self.up_to_date)}, "
            f"incomplete {len(self.failed)}; {self.points:,} series points, {self.bytes:,} file bytes "
            f"in {self.seconds:.1f} s"
        )

    def incomplete_lines(self, limit: int = 20) -> list[str]:
        """One line per entity left incomplete (the first `limit`), for the caller to print."""
        return [f"incomplete: {ref.kind if ref else 'entity'} {sys_id}: {reason}" for ref, sys_id, reason in self.failed[:limit]]

    def raise_for_failures(self, limit: int = 20) -> None:
        """PartialFailure (exit 1) when some entities are incomplete; export.log says why."""
        if self.failed:
            more = f" (and {len(self.failed) - limit} more, see export.log)" if len(self.failed) > limit else ""
            raise PartialFailure(f"{len(self.failed)} incomplete{more}; re-run the same command to retry them")




class DiskFull(NmigError):
    pass


def _now() -> str:
    return encode_datetime(dt.datetime.now(dt.timezone.utc))


def prepare_out_dir(out: Path | str | BundleRoot, storage_options: dict[str, Any] | None = None) -> None:
    """Create DIR, prove it is writable, and refuse a non-empty folder that is not a bundle."""
    root = open_root(out, storage_options)
    try:
        root.prepare()
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(f"no space left to write to {out}") from None
        raise NmigError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    known = {EXPORT_INFO, EXPORT_LOG, PARTIAL_DIR, *KIND_FOLDERS.values()}
    # Hidden names are ignored: our own leftovers (a temporary export.json of a killed first run, .partial)
    # and things like .DS_Store.
    strangers = [name for name, _ in root.entries("") if name not in known and not name.startswith(".")]
    if strangers and root.kind(EXPORT_INFO) is None:
        raise NmigError(f"{out} is not empty and not an nmig bundle; choose a new or empty folder for --out")


def existing_entities(out: Path | str | BundleRoot) -> dict[tuple[str, str], Existing]:
    """What a previous export left in DIR (nothing if it never got as far as export.json)."""
    root = open_root(out)
    if root.kind(EXPORT_INFO) is None:
        return {}
    from nmig.schema import Bundle

    bundle = Bundle(root)  # refuses a bundle of a newer major version with a clear message
    state: dict[tuple[str, str], Existing] = {}
    for kind in KIND_FOLDERS:
        # Bundle.committed, not entities(): a resume needs whether each entity was committed whole, not every
        # manifest validated (most of a resume's time on a project of 100,000 runs).
        for sys_id, (complete, modified) in bundle.committed(kind).items():
            state[(kind, sys_id)] = Existing(complete, modified)
    return state


def project_attribute(raw: dict[str, Any]) -> dict[str, Any]:
    """A project-level attribute in the bundle's ATTRIBUTE form. Series and files of the project itself have no
    place in export.json, so they are listed with the reason instead of their content."""
    path, type_ = raw.get("name"), raw.get("type")
    props = raw.get(f"{type_}Properties") or {}
    if type_ in ATOM_TYPES:
        value = props.get("value")
        if type_ == "float" and isinstance(value, str):
            value = float(value)
        return {"path": path, "type": type_, "value": encode_atom(str(type_), value)}
    if type_ == "stringSet":
        return {"path": path, "type": type_, "values": sorted(props.get("values") or [])}
    if type_ == "experimentState":
        return {"path": path, "type": type_, "value": props.get("value")}
    if type_ in RAW_TYPES:
        return {
            "path": path,
            "type": type_,
            "value": {k: v for k, v in props.items() if k not in ("attributeName", "attributeType")},
        }
    return {"path": path, "type": type_, "skipped": "project-level attribute of this type is not exported"}


class _Log:
    """DIR/export.log: one line per entity with its source URL and outcome (appended across re-runs).

    An object cannot be appended to: on a store the log is kept in memory and the whole object put again at
    most every LOG_UPLOAD_SECONDS and at the end, so a killed export loses at most that much of its log."""

    LOG_UPLOAD_SECONDS = 60.0

    def __init__(self, root: BundleRoot) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._fh: Any = None
        self._text: list[str] = []
        self._uploaded = time.monotonic()
        if root.is_local:
            self._fh = open(root.join(EXPORT_LOG), "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            with contextlib.suppress(OSError, BundleError):
                self._text.append(root.read_bytes(EXPORT_LOG, 1 << 30).decode("utf-8", "replace"))

    def line(self, text: str) -> None:
        # Best effort: the log is for people, the bundle itself is the record. A full disk is reported by the
        # bundle writes, not by a log line failing first.
        with self._lock, contextlib.suppress(OSError):
            if self._fh is not None:
                self._fh.write(f"{_now()} {text}\n")
                self._fh.flush()
                return
            self._text.append(f"{_now()} {text}\n")
            if time.monotonic() - self._uploaded > self.LOG_UPLOAD_SECONDS:
                self._upload()

    def _upload(self) -> None:
        self._uploaded = time.monotonic()
        self._root.write_bytes(EXPORT_LOG, "".join(self._text).encode("utf-8"))

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            if self._fh is not None:
                self._fh.close()
            else:
                self._upload()


class _Bars:
    def __init__(self, quiet: bool, total: int) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self.entities = tqdm(total=total, desc="entities", unit="", disable=quiet, position=0, leave=True)
        self.points = tqdm(desc="points", unit=" pts", unit_scale=True, disable=quiet, position=1, leave=True)
        self.bytes = tqdm(desc="files", unit="B", unit_scale=True, disable=quiet, position=2, leave=True)

    def add(self, bar: Any, n: int) -> None:
        with self._lock:
            bar.update(n)

    def close(self) -> None:
        for bar in (self.entities, self.points, self.bytes):
            bar.close()


EXPORT_LOCK = ".nmig-export.lock"


def export_project(options: ExportOptions) -> ExportResult:
    """Everything `nmig export` does but printing its final lines: NmigError for bad input (no token, a bad
    project name); the caller prints `summary()` and `incomplete_lines()` and decides the exit
    (`raise_for_failures`)."""
    if not options.api_token or not options.api_token.strip():
        raise NmigError("no API token: pass --api-token or set NEPTUNE_API_TOKEN")
    options = dataclasses.replace(options, project=validate_project(options.project), api_token=options.api_token.strip())
    root = open_root(options.out, options.storage_options)
    prepare_out_dir(root)
    # One export per --out at a time: a second would delete the first's work in progress in .partial (or,
    # on a store, publish the same entities as the first). The N shards of one export share the bundle, one
    # process per shard, each cleaning and writing only its own entities; in a local folder an unsharded
    # export waits for none of them (it holds the folder's lock, which the shards hold shared).
    busy = f"another nmig export is writing to {options.out}; wait for it to finish, or use another --out"
    with contextlib.ExitStack() as held:
        if options.shard is None:
            held.enter_context(root.lock(EXPORT_LOCK, busy))
        else:
            if root.is_local:
                held.enter_context(FolderLock(root.join(EXPORT_LOCK), busy, shared=True))  # type: ignore[arg-type]
            shard_busy = f"another nmig export --shard {options.shard} is writing to {options.out}; wait for it to finish"
            held.enter_context(root.lock(f"{EXPORT_LOCK}.{options.shard.tag}", shard_busy))
        try:
            return _export_locked(options, root)
        finally:
            if not root.is_local:
                root.clean_work()  # a temporary local folder; a local bundle's .partial is cleaned at the next run


def _export_locked(options: ExportOptions, root: BundleRoot) -> ExportResult:
    started = time.monotonic()
    out = root
    existing = existing_entities(root)
    matcher = RunMatcher(options.runs)  # a bad --runs regex is refused before connecting
    result = ExportResult()
    with (
        LegacySource(options.project, options.api_token, quiet=options.quiet) as source,
        ThreadPoolExecutor(1, thread_name_prefix="nmig-project") as side,
    ):
        # The project's own attributes and details are read while the entities are listed and exported: two
        # round trips which under 429s wait out a Retry-After as often as not, and which only export.json
        # needs. It is written once they are in (_record_project), and no entity is committed before it.
        project_read = side.submit(_read_project, source)
        try:
            info, todo = _plan(source, options, root, matcher, existing, result)
        except NmigError:
            raise
        except Exception as exc:  # the server kept failing after the client's retries and ours
            raise NmigError(
                f"cannot read project {options.project} from the server: {describe(exc)}"
            ) from None

        from nmig.schema import clean_partial, write_export_info

        # leftovers of a killed run: all of them, or a shard's own (the other shards may be writing theirs)
        shard = options.shard
        clean_partial(out, only=None if shard is None else lambda kind, sys_id: shard.holds(sys_id))
        recorded = side.submit(_record_project, source, root, info, project_read, shard)
        log = _Log(root)
        log.line(
            f"export of {options.project} started: {len(todo)} to export, {len(result.up_to_date)} already complete"
        )
        for ref in result.up_to_date:
            log.line(f"{ref.kind} {ref.sys_id} {ref.url} already complete")
        for ref_or_none, sys_id, reason in result.failed:
            log.line(f"{ref_or_none.kind if ref_or_none else '?'} {sys_id!r} refused: {reason}")
        bars = _Bars(options.quiet, len(todo))
        counters = Counters(lambda n: bars.add(bars.points, n), lambda n: bars.add(bars.bytes, n))
        try:
            _export_all(options, root, source, todo, counters, log, bars, result, recorded)
            recorded.result()  # with nothing to export, export.json is still written (or its failure said)
        except _ProjectUnrecorded:
            recorded.result()  # raises why
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise _disk_error(exc, out) from None
            raise
        finally:
            bars.close()
            result.points, result.bytes, result.hedged = counters.points, counters.bytes, counters.hedged
            result.seconds = time.monotonic() - started
            log.line(f"export finished: {result.summary()}")
            log.close()
        info["finished_at"] = _now()
        _write_info(out, info, write_export_info, options.shard)
    result.points, result.bytes, result.hedged = counters.points, counters.bytes, counters.hedged
    result.seconds = time.monotonic() - started
    return result


def _read_project(source: LegacySource) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    project_raw = with_retries(lambda: source.attributes(source.project_container_id))
    return project_raw, source.project_info(project_raw)


class _ProjectUnrecorded(Exception):
    """export.json could not be written (the project could not be read): no entity may be committed."""


def _record_project(
    source: LegacySource,
    root: BundleRoot,
    info: dict[str, Any],
    project_read: Future[tuple[list[dict[str, Any]], dict[str, Any]]],
    shard: Shard | None,
) -> None:
    """Add the source project, once read, to `info` (export.json's content) and write it."""
    from nmig.schema import write_export_info

    try:
        project_raw, project = project_read.result()
    except NmigError:
        raise
    except Exception as exc:  # the server kept failing after the client's retries and ours
        raise NmigError(f"cannot read project {source.workspace}/{source.project_name} from the server: {describe(exc)}") from None
    # What the server's API let the export read (its loaded specs): a reader of the bundle sees why an
    # attribute type is missing without the log.
    project["api"] = {
        "float_paging": source.float_paging,
        "unsupported_attribute_types": dict(sorted(source.unsupported_types.items())),
    }
    _check_same_project(root, project)
    attributes = sorted((project_attribute(a) for a in project_raw), key=lambda a: str(a.get("path")))
    whole = {"source": project, **info, "project_attributes": attributes}
    if "trashed" in info:
        whole["trashed"] = whole.pop("trashed")  # last, as before
    info.clear()
    info.update(whole)
    _write_info(root, info, write_export_info, shard)


def _list_refs(source: LegacySource, options: ExportOptions, matcher: RunMatcher) -> list[EntityRef]:
    """The entities the selection names, as listed. The client pages listings outside its retry loop, so ours
    covers them. An --update lists trashed runs too (and exports none of them unless --include-trashed): a run
    the bundle holds that was trashed in 2.x since is recorded in export.json's "trashed", so the import can
    report it (and --sync-trash act on it)."""
    listings: list[tuple[str, str | None, bool]] = [("run", options.query, options.include_trashed or options.update)]
    if options.models:
        listings += [(kind, None, options.include_trashed) for kind in ("model", "model_version")]

    def listed(listing: tuple[str, str | None, bool]) -> list[EntityRef]:
        return with_retries(lambda: source.list_entities(*listing), LISTING_ATTEMPTS)

    # side by side: each is a few round trips one after another (a count, the pages, an empty last page)
    with ThreadPoolExecutor(len(listings), thread_name_prefix="nmig-listing") as pool:
        runs, *others = pool.map(listed, listings)
    refs = [r for r in runs if matcher.matches(r.sys_id, r.custom_run_id)]
    if matcher and not refs:  # as `nmig import --runs` says it, with the same exit status
        raise NmigError(f"--runs {' '.join(options.runs)} matches no run in {options.project}")
    for other in others:
        refs += other
    return refs


def _plan(
    source: LegacySource,
    options: ExportOptions,
    root: BundleRoot,
    matcher: RunMatcher,
    existing: dict[tuple[str, str], Existing],
    result: ExportResult,
) -> tuple[dict[str, Any], list[tuple[EntityRef, str]]]:
    """export.json's content but the source project's (_record_project adds it), and what to export and why;
    entities the bundle already holds go to `result.up_to_date`, entities that cannot be exported at all to
    `result.failed`."""
    refs = _list_refs(source, options, matcher)
    # the names the client resolved when it opened the project (getProject): a bundle of another project is
    # refused before anything is cleaned or written; _record_project checks again with the project read whole
    _check_same_project(root, dict(zip(("workspace", "project"), source.resolved_names(), strict=True)))
    info: dict[str, Any] = {
        "selection": {
            "query": options.query,
            "runs": list(options.runs),
            "include_trashed": options.include_trashed,
            "models": options.models,
            "shard": str(options.shard) if options.shard else None,
        },
        "started_at": _now(),
        "finished_at": None,
    }

    todo: list[tuple[EntityRef, str]] = []
    trashed: list[str] = []  # runs of the bundle trashed in 2.x since they were exported (--update)
    seen: set[tuple[str, str]] = set()
    for ref in refs:
        if (ref.kind, ref.sys_id) in seen:
            continue
        seen.add((ref.kind, ref.sys_id))
        if options.shard is not None and not options.shard.holds(ref.sys_id):
            continue
        if ref.trashed and not options.include_trashed:
            if (ref.kind, ref.sys_id) in existing:
                trashed.append(ref.sys_id)
            continue
        try:
            safe_component(ref.sys_id)
        except BundleError as exc:
            result.failed.append((ref, ref.sys_id, str(exc)))
            continue
        reason = needs_export(existing.get((ref.kind, ref.sys_id)), ref.modification_time, options.update)
        if reason is None:
            result.up_to_date.append(ref)
        else:
            todo.append((ref, reason))
    if options.update:
        info["trashed"] = {"run": sorted(trashed)}
    return info, todo


def _check_same_project(out: BundleRoot, project: dict[str, Any]) -> None:
    """Refuse to mix two projects in one bundle (a re-run must name the project the bundle came from)."""
    if out.kind(EXPORT_INFO) is None:
        return
    from nmig.schema import Bundle

    previous = Bundle(out).info.get("source") or {}
    before = (previous.get("workspace"), previous.get("project"))
    now = (project.get("workspace"), project.get("project"))
    if before != now and all(before):
        raise NmigError(
            f"{out} holds an export of {before[0]}/{before[1]}, not {now[0]}/{now[1]}; use another --out folder"
        )


EXPORT_INFO_LOCK = ".nmig-export-info.lock"
# How long a shard waits for the others to write export.json (each holds it for one read and one write).
EXPORT_INFO_WAIT_S = 120.0


def _write_info(out: BundleRoot, info: dict[str, Any], write: Callable[[BundleRoot, dict[str, Any]], None], shard: Shard | None) -> None:
    try:
        if shard is None:
            write(out, info)
            return
        # the shards of one export write one export.json: each adds itself to what the others wrote
        with _info_lock(out):
            previous: dict[str, Any] | None = None
            if out.kind(EXPORT_INFO) is not None:
                from nmig.schema import Bundle

                previous = Bundle(out).info
            write(out, merge_shard_info(previous, info, shard))
    except OSError as exc:
        raise _disk_error(exc, out) from None


@contextlib.contextmanager
def _info_lock(root: BundleRoot) -> Iterator[None]:
    """The short lock around a shard's read and write of export.json, waited for (the root's locks refuse)."""
    deadline = time.monotonic() + EXPORT_INFO_WAIT_S
    busy = f"export.json of {root} stayed locked by another shard for {EXPORT_INFO_WAIT_S:.0f} s"
    while True:
        try:
            lock = root.lock(EXPORT_INFO_LOCK, busy)
            lock.__enter__()
            break
        except NmigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def merge_shard_info(previous: dict[str, Any] | None, info: dict[str, Any], shard: Shard) -> dict[str, Any]:
    """export.json of a folder that the shards of one export share: `shards` maps each shard written into it
    ("I/N") to its own started_at/finished_at, `selection.shard` lists them ("1/4,2/4"), `started_at` is the
    first shard's and `finished_at` is set once every shard 1/N..N/N has finished. A previous export.json of
    another N, or of no shard, is not merged (this export's N starts over)."""
    shards: dict[str, dict[str, Any]] = {}
    before = (previous or {}).get("shards")
    if isinstance(before, dict):
        shards = {
            name: dict(times) for name, times in before.items()
            if isinstance(times, dict) and isinstance(name, str) and name.endswith(f"/{shard.count}")
        }
    shards[str(shard)] = {"started_at": info.get("started_at"), "finished_at": info.get("finished_at")}
    ordered = sorted(shards, key=lambda name: int(name.split("/")[0]) if name.split("/")[0].isdigit() else 0)
    merged = dict(info)
    merged["shards"] = {name: shards[name] for name in ordered}
    merged["selection"] = {**info.get("selection", {}), "shard": ",".join(ordered)}
    starts = [str(t["started_at"]) for t in shards.values() if t.get("started_at")]
    merged["started_at"] = min(starts) if starts else info.get("started_at")
    everyone = {f"{i}/{shard.count}" for i in range(1, shard.count + 1)}
    ends = [t.get("finished_at") for t in shards.values()]
    merged["finished_at"] = max(str(e) for e in ends) if set(shards) == everyone and all(ends) else None
    return merged


def _disk_error(exc: OSError, out: BundleRoot) -> NmigError:
    if is_disk_full(exc):
        return DiskFull(
            f"no space left on the device of {out} (or a file size limit was hit); free space and re-run"
        )
    return NmigError(f"cannot write to {out}: {exc.strerror or exc}")


def _export_all(
    options: ExportOptions,
    root: BundleRoot,
    source: LegacySource,
    todo: list[tuple[EntityRef, str]],
    counters: Counters,
    log: _Log,
    bars: _Bars,
    result: ExportResult,
    recorded: Future[None],
) -> None:
    """Export `todo` with the options' workers; an entity is committed only once `recorded` (export.json
    written) is done, and if it failed, the export stops with _ProjectUnrecorded."""
    from nmig.schema import EntityBundle, EntityWriter

    out = root
    spool_dir = root.work_dir()
    spool_dir.mkdir(exist_ok=True)
    lock = threading.Lock()
    workers = max(1, options.max_workers)
    stopped: list[str] = []  # why the export stops (a full disk): what entities still in flight fail with

    pool = ThreadPoolExecutor(workers, thread_name_prefix="nmig-export")
    # Twice the workers for pages asked for ahead, plus room for the threads that only wait out a Retry-After or
    # a back-off (source.RESTING: no load on the server while they wait); threads start only when needed.
    page_pool = ThreadPoolExecutor(workers * 4, thread_name_prefix="nmig-pages")
    exporter = EntityExporter(
        source, page_pool, counters, spool_dir, options.page_size, options.larger_page_size
    )
    # The largest first (sys/size as listed; the listing order among equals), so the longest entity is not
    # the last to start: under 429s or over latency it is what the export waits for at the end.
    ordered = sorted(todo, key=lambda item: -item[0].size)
    # The attributes of the next entities are asked for while the workers export theirs: an entity's first
    # round trip, which everything else of it waits for (over latency, or under 429s at a second each).
    attributes_ahead: Ahead[EntityRef, list[dict[str, Any]]] = Ahead(
        lambda ref: page_pool.submit(exporter.read_attributes, ref), [ref for ref, _ in ordered], workers
    )
    try:
        def one(ref: EntityRef, why: str) -> None:
            try:
                with EntityWriter(root, ref.kind, ref.sys_id) as writer:
                    exporter.export(ref, writer, attributes_ahead.take(ref))
                    try:
                        recorded.result()  # export.json before the first entity it describes
                    except Exception as exc:
                        raise _ProjectUnrecorded() from exc
                # The reader words the reason; a clean entity needs no second look at what was just written.
                problem = (
                    EntityBundle(writer.target, ref.kind, ref.sys_id, root=root).incomplete_reason
                    if writer.has_errors
                    else None
                )
            except _ProjectUnrecorded:
                raise  # the whole export stops: _export_locked says why
            except OSError as exc:
                if is_disk_full(exc):
                    error = _disk_error(exc, out)
                    stopped.append(str(error))
                    raise error from None
                problem = f"cannot write: {describe(exc)}"
            except Exception as exc:  # a bug or an unexpected answer: this entity fails, the others go on
                # once the export stops, the pools refuse new work: that is the stop, not a failure of its own
                problem = f"stopped: {stopped[0]}" if stopped else f"unexpected failure: {describe(exc)}"
            with lock:
                if problem is None:
                    result.exported.append(ref)
                else:
                    result.failed.append((ref, ref.sys_id, problem))
            outcome = f"exported ({why})" if problem is None else f"INCOMPLETE: {problem}"
            log.line(f"{ref.kind} {ref.sys_id} {ref.url} {outcome}")
            bars.add(bars.entities, 1)

        futures = [pool.submit(one, ref, why) for ref, why in ordered]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                raise exc
    except BaseException:
        # A full disk or Ctrl-C: start nothing new; entities in flight finish or are left in .partial, and
        # the next run starts from what was committed.
        attributes_ahead.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        page_pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    page_pool.shutdown()
