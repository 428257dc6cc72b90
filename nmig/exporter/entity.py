"""Exporting one run, model or model version: every attribute, exactly as the server gives it.

One request lists every attribute with its properties (atoms, sets, git/notebook refs, series summaries); series
are paged with the client's own page size and several pages in flight where the server pages by offset; files are downloaded into a spool and handed to the
bundle writer only when complete, so a retried download never leaves half a file behind. An attribute that still
fails after the client's retries and ours is recorded as an error, which leaves the entity incomplete.
"""

from __future__ import annotations

import errno
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any, TypeVar

from nmig.errors import NmigError
from nmig.exporter.ahead import Ahead
from nmig.exporter.pages import PageHold, ValuePage
from nmig.exporter.source import (
    OPERATIONS_BY_TYPE,
    RESTING,
    Abandoned,
    EntityRef,
    LegacySource,
    abandonable,
    datetime_or_none,
)
from nmig.schema.format import ATOM_TYPES, RAW_TYPES, VALUE_SERIES_TYPE_KIND, encode_datetime

T = TypeVar("T")

# The page size the official client itself asks for (neptune/attributes/series/fetchable_series.py:47), so
# known to be accepted by any 2.x server; a larger one is not (the published specs state no maximum).
DEFAULT_PAGE_SIZE = 1_000
PAGES_IN_FLIGHT = 8  # enough to keep a server busy while we decode; measured in benchmarks/bench_export.py
# Pages of one series asked for ahead of the one being written, answered or not; measured in
# benchmarks/bench_faults.py (a 429's Retry-After holds one page up for a second while the rest go on).
PAGES_AHEAD = 64 * PAGES_IN_FLIGHT
PAGES_HELD_BYTES = 8 * 1024 * 1024  # of answered pages per series in memory; more wait in the spool folder
# A larger page size tried once per export, on the first series long enough to need it: when the server answers
# it in full, it is known to be accepted and used from then on (fewer requests per point: most of what the
# client's own 1,000 costs). Measured in benchmarks/bench_export.py.
LARGER_PAGE_SIZE = 10_000
MIN_PAGE_SIZE = 1  # a refused page size is halved down to this before the series is given up on
_REFUSED_PAGE = (400, 413, 422)  # how a server refuses a `limit` it does not accept
SERIES_AHEAD = 4  # first pages of an entity's next value series asked for while one is paging (ahead.Ahead)
FILES_AHEAD = 4  # files of an entity downloaded ahead of their turn (ahead.Ahead)
OUR_ATTEMPTS = 3  # on top of the client's own retry loop (which gives up after about a minute)
SPOOL_IN_MEMORY = 16 * 1024 * 1024
SPOOL_AHEAD_IN_MEMORY = 1024 * 1024  # of each file downloaded ahead of its turn
_COPY_CHUNK = 1024 * 1024

# Echoes of the attribute's own name and type inside its properties; not part of the value.
_PROPERTY_ECHOES = ("attributeName", "attributeType")


class Counters:
    """Points and bytes read so far, for progress bars, and pages asked for twice (hedged); thread-safe."""

    def __init__(self, on_points: Callable[[int], None] | None = None, on_bytes: Callable[[int], None] | None = None):
        self._lock = threading.Lock()
        self.points = 0
        self.bytes = 0
        self.hedged = 0
        self._on_points = on_points
        self._on_bytes = on_bytes

    def add_points(self, n: int) -> None:
        with self._lock:
            self.points += n
        if self._on_points and n:
            self._on_points(n)

    def add_hedged(self) -> None:
        with self._lock:
            self.hedged += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        if self._on_bytes and n:
            self._on_bytes(n)


class AttributeFailed(Exception):
    """An attribute could not be read exactly; the message says why."""


def _is_permanent(exc: BaseException) -> bool:
    """Client errors (4xx other than 408/429) do not get better by asking again."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)


def with_retries(action: Callable[[], T], attempts: int = OUR_ATTEMPTS) -> T:
    for attempt in range(attempts):
        try:
            return action()
        except (NmigError, Abandoned):
            raise  # the user's input or the server's definite answer, or work given up: asking again changes nothing
        except OSError as exc:
            if _is_local_io_error(exc):
                raise  # a local disk problem: asking the server again will not help
            if _is_permanent(exc) or attempt == attempts - 1:
                raise
        except AttributeFailed:
            if attempt == attempts - 1:
                raise
        except Exception as exc:
            if _is_permanent(exc) or attempt == attempts - 1:
                raise
        time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: OSError) -> bool:
    """No space (or quota, or file size limit) for our own writes; pyarrow's errors carry only the text."""
    text = str(exc)
    return exc.errno in DISK_FULL_ERRNOS or "No space left" in text or "File too large" in text


def _is_local_io_error(exc: OSError) -> bool:
    """An OSError of our own file system, as opposed to the many network errors that are OSErrors too
    (requests' and bravado's HTTP errors, resets, timeouts, name resolution)."""
    import socket

    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | socket.herror):
        return False
    return exc.errno is not None


def describe(exc: BaseException) -> str:
    """One line for a manifest error or a summary (the client's own exception texts are multi-line banners)."""
    from nmig.secrets import redact

    status = getattr(exc, "status", None)
    response = getattr(exc, "response", None)
    if isinstance(status, int) and isinstance(response, str):  # the client's ClientHttpError
        return redact(f"the server answered HTTP {status}: {' '.join(response.split())[:300]}")
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return redact(f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__)


class EntityExporter:
    """Writes one entity through an `EntityWriter` of nmig.schema."""

    def __init__(
        self,
        source: LegacySource,
        page_pool: ThreadPoolExecutor,
        counters: Counters,
        spool_dir: Path,
        page_size: int = DEFAULT_PAGE_SIZE,
        larger_page_size: int | None = None,
    ) -> None:
        self.source = source
        self.page_pool = page_pool
        self.counters = counters
        self.spool_dir = spool_dir
        self.page_size = page_size
        # The larger page size tried once (see _probe_larger_page); None: not (or no longer) to be tried.
        self.larger_page_size: int | None = larger_page_size
        self._page_size_lock = threading.Lock()

    def read_attributes(self, ref: EntityRef) -> list[dict[str, Any]]:
        """Every attribute of an entity, raw, with our retries around the client's."""
        return with_retries(lambda: self.source.attributes(ref.container_id))

    def export(self, ref: EntityRef, writer: Any, attributes_read: Future[list[dict[str, Any]]] | None = None) -> None:
        """Export `ref` into `writer`; `attributes_read`: its read_attributes asked for ahead, if it was."""
        try:
            attributes = attributes_read.result() if attributes_read is not None else self.read_attributes(ref)
        except Exception as exc:
            writer.set_info(custom_run_id=ref.custom_run_id, source_url=ref.url, modification_time=ref.modification_time)
            writer.error("", f"cannot list the attributes: {describe(exc)}")
            return
        by_path = {a.get("name"): a for a in attributes}
        writer.set_info(
            custom_run_id=_string_value(by_path.get("sys/custom_run_id")) or ref.custom_run_id,
            source_url=ref.url,
            modification_time=_datetime_value(by_path.get("sys/modification_time")) or ref.modification_time,
        )
        ordered = sorted(attributes, key=lambda a: str(a.get("name")))
        # Series are exported one after another (their points reach the writer in path order, which it writes
        # as they come), each starting with a request for its first page, which says how many points there
        # are; files one after another too. Asked for ahead, those round trips overlap with the paging before
        # them instead of following it: most of a small run's time over latency or under 429s
        # (benchmarks/bench_faults.py); on loopback the thread handoffs cost little (bench_export.py).
        series_kinds = {
            a["name"]: VALUE_SERIES_TYPE_KIND[a.get("type")]
            for a in ordered
            if a.get("type") in VALUE_SERIES_TYPE_KIND and isinstance(a.get("name"), str)
        }
        first_pages: Ahead[str, tuple[int, Any]] = Ahead(
            lambda path: self.page_pool.submit(self._fetch_page, series_kinds[path], ref, path, 0),
            list(series_kinds), SERIES_AHEAD, in_order=True,
        )
        file_props = {a["name"]: a.get("fileProperties") or {} for a in ordered if a.get("type") == "file" and isinstance(a.get("name"), str)}
        files_ahead: Ahead[str, IO[bytes]] = Ahead(
            # ahead of its turn a download keeps less in memory (SPOOL_AHEAD_IN_MEMORY), the rest on disk
            lambda path: self.page_pool.submit(self._download_file, ref, path, file_props[path], SPOOL_AHEAD_IN_MEMORY),
            list(file_props), FILES_AHEAD, in_order=True, discard=_close_download,
        )
        try:
            for attribute in ordered:
                path = attribute.get("name")
                type_ = attribute.get("type")
                if not isinstance(path, str) or not isinstance(type_, str):
                    writer.error(str(path), f"malformed attribute from the server: name {path!r}, type {type_!r}")
                    continue
                try:
                    props = attribute.get(f"{type_}Properties") or {}
                    self._export_attribute(ref, writer, path, type_, props, first_pages, files_ahead)
                except OSError as exc:
                    if is_disk_full(exc):
                        raise  # not this attribute's fault: the whole export must stop
                    writer.error(path, describe(exc))
                except Exception as exc:
                    writer.error(path, describe(exc))
        finally:
            first_pages.cancel()
            files_ahead.cancel()

    # ---- by type -----------------------------------------------------------------------------------

    def _export_attribute(
        self,
        ref: EntityRef,
        writer: Any,
        path: str,
        type_: str,
        props: dict[str, Any],
        first_pages: Ahead[str, tuple[int, Any]] | None = None,
        files_ahead: Ahead[str, IO[bytes]] | None = None,
    ) -> None:
        unsupported = self.source.unsupported_types.get(type_) if type_ in OPERATIONS_BY_TYPE else None
        if unsupported is not None:
            writer.skip(path, type_, unsupported)
        elif type_ in ATOM_TYPES:
            writer.add_atom(path, type_, _atom_value(type_, props.get("value")))
        elif type_ == "stringSet":
            writer.add_string_set(path, list(props.get("values") or []))
        elif type_ in VALUE_SERIES_TYPE_KIND:
            writer.declare_series(path, type_)  # an empty series is exported too
            first = first_pages.take(path) if first_pages is not None else None
            self._export_value_series(VALUE_SERIES_TYPE_KIND[type_], ref, writer, path, first)
        elif type_ == "file":
            self._export_file(ref, writer, path, props, files_ahead)
        elif type_ == "fileSet":
            self._export_file_set(ref, writer, path)
        elif type_ in ("imageSeries", "fileSeries"):
            writer.declare_series(path, type_)
            self._export_file_series(ref, writer, path, type_, props)
        elif type_ == "artifact":
            artifact_hash, files = with_retries(lambda: self.source.artifact(ref.container_id, path))
            writer.add_artifact(path, artifact_hash, files)
        elif type_ == "experimentState":
            writer.add_raw(path, type_, props.get("value"))
        elif type_ in RAW_TYPES:
            writer.add_raw(path, type_, {k: v for k, v in props.items() if k not in _PROPERTY_ECHOES})
        else:
            writer.skip(path, type_, f"attribute type {type_!r} is not known to nmig; its value was not read")

    def _with_page_size(self, fetch: Callable[[int], T]) -> T:
        """`fetch(page size)` with our retries; a page size the server refuses (400/413/422) is halved until it
        is accepted (and kept for the rest of the export), so no series fails because of our page size."""
        while True:
            size = self.page_size
            try:
                return with_retries(lambda size=size: fetch(size))  # type: ignore[misc]
            except Exception as exc:
                status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
                if status not in _REFUSED_PAGE or size <= MIN_PAGE_SIZE:
                    raise
                with self._page_size_lock:
                    if self.page_size == size:
                        self.page_size = max(MIN_PAGE_SIZE, size // 2)

    def _probe_larger_page(
        self, kind: str, ref: EntityRef, path: str, offset: int, remaining: int, skip_to_step: float | None = None
    ) -> Any | None:
        """In a series with more than one page still to read: ask for LARGER_PAGE_SIZE points at `offset`, one
        probe at a time. A full page answered means that size is known to be accepted, and every later page is
        that large; a shorter one while more points remain is the server's own cap, and later pages are that
        large; refused or failed keeps the size known to work, and ends the probing.

        A shorter page that reaches the series' end says only that a page of that many is accepted: later pages
        are that large, and a later series with more left to read asks again. Series shorter than
        LARGER_PAGE_SIZE are the common case (a 5,000-point metric took five requests at the client's 1,000,
        and takes one or two now). Returns the page's points when it could be used, None otherwise."""
        larger = self.larger_page_size
        if larger is None or larger <= self.page_size or remaining <= self.page_size:
            return None
        with self._page_size_lock:
            if self.larger_page_size is None:
                return None
            self.larger_page_size = None  # one probe at a time; given back below when it told too little
        try:
            if kind == "file":
                page = self.source.channel_page(path, offset, larger)
                points: Any = list(page.get("values") or [])
            else:
                points = self.source.series_page(kind, ref.container_id, path, offset, larger, skip_to_step)
        except Exception:  # refused or failed: the client's own size is known to work
            return None
        with self._page_size_lock:
            if len(points) == larger or len(points) > self.page_size:
                # in full: that size is accepted; shorter: the server's cap, or all the series had left
                self.page_size = max(self.page_size, len(points))
            if len(points) < larger and len(points) >= remaining:
                self.larger_page_size = larger  # the series' end, not the server, stopped it: ask again later
        return points if len(points) else None

    def _first_page_larger(self, kind: str, ref: EntityRef, path: str) -> ValuePage | None:
        """While a larger page size is still being probed: a series' first page asked for at
        LARGER_PAGE_SIZE. It tells what `_probe_larger_page` does (in full: accepted; shorter than the series:
        the server's cap; the whole series: one request, and the probing goes on), and a series shorter than
        that page takes one request. Refused or failed: the probing ends (None: asked again at the size known
        to work); the first wave of series pays at most one request each for a server that refuses it."""
        larger = self.larger_page_size
        if larger is None or larger <= self.page_size:
            return None
        try:
            page = self.source.series_page(kind, ref.container_id, path, 0, larger, None)
        except Exception:
            with self._page_size_lock:
                self.larger_page_size = None
            return None
        with self._page_size_lock:
            self.page_size = max(self.page_size, len(page))  # a page of that many is accepted, whatever else
            if len(page) == larger or len(page) < page.total:
                # in full: accepted; shorter than the series: the server's cap. Either way, the probing is over.
                self.larger_page_size = None
        return page

    def _fetch_page(
        self, kind: str, ref: EntityRef, path: str, offset: int, skip_to_step: float | None = None
    ) -> tuple[int, Any]:
        """(totalItemCount, points) of one page of a value series (a `ValuePage`) or, for kind "file", of the
        channel `path` names (a list of LimitedChannelValuesDTO values)."""
        if kind == "file":
            page = self._with_page_size(lambda size: self.source.channel_page(path, offset, size))
            return int(page.get("totalItemCount") or 0), list(page.get("values") or [])
        if offset == 0 and skip_to_step is None:
            first = self._first_page_larger(kind, ref, path)
            if first is not None:
                return first.total, first
        values = self._with_page_size(
            lambda size: self.source.series_page(kind, ref.container_id, path, offset, size, skip_to_step)
        )
        return values.total, values

    def _pages_by_step(self, ref: EntityRef, path: str, first: Future[tuple[int, Any]] | None) -> Iterator[ValuePage]:
        """The pages of a float series on a server paging by skipToStep (no offset): one after another, each
        from the last step received. Points at or before that step are dropped, so an inclusive and an exclusive
        skipToStep read alike; steps of a 2.x float series increase, and the count is checked at the end."""
        total, page = first.result() if first is not None else self._fetch_page("float", ref, path, 0)
        received = 0
        last: float | None = None
        while True:
            if last is not None and len(page):
                page = page.after_step(last)
            if not len(page):
                break
            received += len(page)
            last = page.last_step()
            yield page
            if received >= total:
                break
            probed = self._probe_larger_page("float", ref, path, 0, total - received, last)
            if probed is not None:
                page = probed
                continue
            total, page = self._fetch_page("float", ref, path, 0, last)
        _check_count(path, received, total)

    def _pages(
        self, kind: str, ref: EntityRef, path: str, first: Future[tuple[int, Any]] | None = None
    ) -> Iterator[Any]:
        """The pages of a series, in order, with up to PAGES_IN_FLIGHT requests at once: `ValuePage`s for
        float/string series, lists of points for file series. `first` is the first page, if already requested.

        Offsets advance by what the server actually returned, so a server that caps the page size below ours
        is still read completely; the count is checked against totalItemCount at the end.
        """

        if kind == "float" and self.source.float_paging == "skipToStep":
            yield from self._pages_by_step(ref, path, first)
            return

        def fetch(offset: int) -> tuple[int, Any]:
            return self._fetch_page(kind, ref, path, offset)

        total, points = first.result() if first is not None else fetch(0)
        received = len(points)
        if received:
            yield points
        if received >= total or not received:
            _check_count(path, received, total)
            return
        page = received
        probed = self._probe_larger_page(kind, ref, path, received, total - received)
        if probed is None and received < self.page_size and total - received <= self.page_size:
            # the first page was asked for at a smaller size than is known to work now (asked ahead, before a
            # probe): the rest in one request
            probed = fetch(received)[1] or None
        if probed is not None:
            received += len(probed)
            yield probed
            page = max(page, len(probed))
            if received >= total:
                _check_count(path, received, total)
                return
        # each page asked for: its answer, the thread asking (once it started), its stop signal, its offset
        queue: deque[tuple[Future[tuple[int, Any]], list[int], threading.Event, int]] = deque()
        hedges: dict[int, tuple[Future[tuple[int, Any]], threading.Event]] = {}  # offset -> the page's twin
        next_offset = received
        hold = PageHold(self.spool_dir, PAGES_HELD_BYTES)

        def ahead(thread: list[int], stop: threading.Event, offset: int) -> tuple[int, Any]:
            thread.append(threading.get_ident())  # so the pager can see it resting (source.RESTING)
            with abandonable(stop):  # a page no longer wanted stops waiting to ask again
                total, points = fetch(offset)
            return total, hold.hold(points)

        def at_server() -> int:
            return sum(1 for f, thread, _, _ in queue if not f.done() and not (thread and thread[0] in RESTING))

        def top_up() -> None:
            # Up to PAGES_IN_FLIGHT requests at the server (one waiting out a Retry-After or a back-off before
            # its retry is not), and up to PAGES_AHEAD pages asked for ahead of the one being written: a page
            # held up no longer stops the pages behind it from being asked for; answered ones wait their turn
            # (in memory up to PAGES_HELD_BYTES, the rest in the spool folder).
            nonlocal next_offset
            while next_offset < total and len(queue) < PAGES_AHEAD and at_server() < PAGES_IN_FLIGHT:
                thread: list[int] = []
                stop = threading.Event()
                queue.append((self.page_pool.submit(ahead, thread, stop, next_offset), thread, stop, next_offset))
                next_offset += page

        def hedge_resting() -> None:
            # The tail of the series: every page is asked for, and those not answered yet hold its end. One
            # waiting out a Retry-After or a back-off (maybe its second or third) is asked for once more beside
            # it (a hedged request: one request more, when nothing else of the series is left to ask), and the
            # first answer is taken. Without it, the page in a few hundred that meets three or four 429s in a
            # row under 20% throttling set the end of the export (benchmarks/bench_faults.py).
            if next_offset < total:
                return
            for future, thread, _, offset in queue:
                if offset not in hedges and not future.done() and thread and thread[0] in RESTING:
                    stop = threading.Event()
                    hedges[offset] = (self.page_pool.submit(ahead, [], stop, offset), stop)
                    self.counters.add_hedged()

        def drop_when_done(future: Future[tuple[int, Any]]) -> None:
            if not future.cancelled() and future.exception() is None:
                hold.drop(future.result()[1])

        def discard() -> None:
            # pages no longer wanted: not waited for; a held one is let go (its spool file removed) once answered
            for future, stop in [(f, s) for f, _, s, _ in queue] + list(hedges.values()):
                stop.set()
                if not future.cancel():
                    future.add_done_callback(drop_when_done)
            queue.clear()
            hedges.clear()

        try:
            top_up()
            while queue:
                head, _, head_stop, head_offset = queue[0]
                while not head.done() and not _answered(hedges.get(head_offset, (None,))[0]):
                    # woken by an answer, or after a while to see whether a request started resting
                    waiting = [f for f, _, _, _ in queue if not f.done()] + [f for f, _ in hedges.values() if not f.done()]
                    wait(waiting, timeout=0.05, return_when=FIRST_COMPLETED)
                    top_up()
                    hedge_resting()
                queue.popleft()
                _, held = _first_answer((head, head_stop), hedges.pop(head_offset, None), drop_when_done).result()
                points = hold.take(held)
                if len(points) != min(page, total - received):
                    # A shorter page than planned (the series changed, or the server capped this page): fall
                    # back to strictly sequential paging from what we have, discarding the speculative requests.
                    discard()
                    if len(points):
                        received += len(points)
                        yield points
                    while received < total:
                        _, points = fetch(received)
                        if not len(points):
                            break
                        received += len(points)
                        yield points
                    break
                received += len(points)
                yield points
                top_up()
        finally:
            discard()
        _check_count(path, received, total)

    def _export_value_series(
        self, kind: str, ref: EntityRef, writer: Any, path: str, first: Future[tuple[int, Any]] | None = None
    ) -> None:
        add = writer.add_float_points if kind == "float" else writer.add_string_points
        for page in self._pages(kind, ref, path, first):
            add(path, page.steps, page.values, page.timestamps)
            self.counters.add_points(len(page))

    def _spool(
        self, opener: Callable[[], Any], expected_size: int | None = None, in_memory: int = SPOOL_IN_MEMORY
    ) -> tuple[IO[bytes], str | None]:
        """Download fully into a spool (memory, then disk), retrying the whole download on failure.

        `opener()` is a context manager yielding a binary stream, or (stream, extension) for FileSeries items,
        whose extension comes from the response's content type.
        """

        def attempt() -> tuple[IO[bytes], str | None]:
            spool = tempfile.SpooledTemporaryFile(max_size=in_memory, dir=self.spool_dir)
            try:
                size = 0
                with opener() as opened:
                    stream, ext = opened if isinstance(opened, tuple) else (opened, None)
                    while chunk := stream.read(_COPY_CHUNK):
                        spool.write(chunk)
                        size += len(chunk)
                        self.counters.add_bytes(len(chunk))
                if expected_size is not None and size != expected_size:
                    raise AttributeFailed(f"received {size} bytes, the server reported {expected_size}")
                spool.seek(0)
                return spool, ext  # type: ignore[return-value]
            except BaseException:
                spool.close()
                raise

        return with_retries(attempt)

    def _download_file(
        self, ref: EntityRef, path: str, props: dict[str, Any], in_memory: int = SPOOL_IN_MEMORY
    ) -> IO[bytes]:
        size = props.get("size")
        expected = size if isinstance(size, int) and not isinstance(size, bool) else None
        spool, _ = self._spool(lambda: self.source.open_file(ref.container_id, path), expected, in_memory)
        return spool

    def _export_file(
        self, ref: EntityRef, writer: Any, path: str, props: dict[str, Any], ahead: Ahead[str, IO[bytes]] | None = None
    ) -> None:
        downloaded = ahead.take(path) if ahead is not None else None
        spool = downloaded.result() if downloaded is not None else self._download_file(ref, path, props)
        with spool:
            writer.add_file(path, spool, props.get("name"), props.get("ext"))

    def _export_file_set(self, ref: EntityRef, writer: Any, path: str) -> None:
        spool, _ = self._spool(lambda: self.source.open_file_set_zip(ref.container_id, path))
        with spool:
            try:
                archive = zipfile.ZipFile(spool)  # type: ignore[arg-type]
            except zipfile.BadZipFile as exc:
                raise AttributeFailed(f"the server's zip of the file set is damaged: {exc}") from None
            with archive:
                # Entry names are data: the writer stores them as names, never as paths on disk.
                members = [m for m in archive.infolist() if not m.is_dir()]
                writer.add_fileset(path, ((m.filename, _ZipMember(archive, m)) for m in members))

    def _export_file_series(self, ref: EntityRef, writer: Any, path: str, type_: str, props: dict[str, Any]) -> None:
        """A file series as the real API keeps it: its points (step `x`, timestamp, `y.imageValue` name and
        description) are the values of the attribute's channel (`channelId`, getChannelValues), the content of
        point i is getImageSeriesValue with index i. A point without `x` has a step nobody can know: it is
        written with a null step (docs/bundle-format.md) and never given an invented one."""
        channel = props.get("channelId")
        if not isinstance(channel, str) or not channel:
            raise AttributeFailed("the server gave no channelId for this file series; its points cannot be read")
        index = 0
        for values in self._pages("file", ref, channel):
            for point in values:
                if not isinstance(point, dict):
                    raise AttributeFailed(f"point {index} of the channel is not an object")
                item = index
                y = point.get("y")
                image = y.get("imageValue") if isinstance(y, dict) else None
                image = image if isinstance(image, dict) else {}
                step = point.get("x")
                if isinstance(step, bool) or not isinstance(step, int | float):
                    step = None
                spool, ext = self._spool(lambda i=item: self.source.open_file_series_item(ref.container_id, path, i))
                with spool:
                    writer.add_file_series_point(
                        path,
                        None if step is None else float(step),
                        int(point["timestampMillis"]),
                        image.get("name"),
                        image.get("description"),
                        spool,
                        ext or None,
                        type=type_,
                    )
                index += 1
                self.counters.add_points(1)



def _answered(future: Future[Any] | None) -> bool:
    return future is not None and future.done() and not future.cancelled() and future.exception() is None


def _first_answer(
    asked: tuple[Future[T], threading.Event],
    hedge: tuple[Future[T], threading.Event] | None,
    discard: Callable[[Future[T]], None],
) -> Future[T]:
    """Of a request and its hedge (either done; each with its stop signal), the one whose answer is used: the
    first good one, waited for if the other failed. The other is told to stop (source.abandonable), and is
    cancelled or handed to `discard` when it ends."""
    if hedge is None:
        return asked[0]
    if asked[0].done() and not _answered(asked[0]) and not hedge[0].done():
        wait([hedge[0]])  # the request failed: its hedge's answer is the one left
    winner, loser = (hedge, asked) if _answered(hedge[0]) and not _answered(asked[0]) else (asked, hedge)
    loser[1].set()
    if not loser[0].cancel():
        loser[0].add_done_callback(discard)
    return winner[0]


def _close_download(future: Future[IO[bytes]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class _ZipMember:
    """A lazily opened member of a zip, so the writer streams one entry at a time."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self._archive = archive
        self._info = info
        self._stream: IO[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        if self._stream is None:
            self._stream = self._archive.open(self._info)
        data = self._stream.read(size)
        if not data:
            self._stream.close()
        return data


def _check_count(path: str, received: int, total: int) -> None:
    if received != total:
        raise AttributeFailed(f"read {received} points of {path}, the server reported {total}")


def _float(value: Any) -> float:
    # float() reads the server's "NaN", "Infinity" and "-Infinity" strings as the matching IEEE values.
    return float(value)


def _atom_value(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "float":
        return _float(value)
    if type_ == "int":
        return int(value)
    if type_ == "datetime":
        return encode_datetime(value)
    return value


def _string_value(attribute: dict[str, Any] | None) -> str | None:
    if not attribute:
        return None
    value = (attribute.get("stringProperties") or {}).get("value")
    return value if isinstance(value, str) and value else None


def _datetime_value(attribute: dict[str, Any] | None) -> str | None:
    return datetime_or_none(((attribute or {}).get("datetimeProperties") or {}).get("value"))
