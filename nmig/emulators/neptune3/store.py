"""Durable storage of the Neptune 3.x emulator: one SQLite database plus a folder of file blobs.

Layout of a data folder::

    <data_dir>/neptune3.sqlite3   metadata, series points, request statuses (WAL mode)
    <data_dir>/blobs/<name>       uploaded file bytes; <name> is a hex digest, never a client-chosen name
    <data_dir>/uploads/<id>/...   uploads in progress (S3 parts, GCS session bytes, Azure blocks; storage.py)
    <data_dir>/.lock              held (flock) by the one server process that owns the folder

Schema (what the read path queries; every time is integer milliseconds since the epoch, UTC):

``projects(project_pk, workspace, name, key, created_ms, next_run_number, visibility, description)``
    One row per project; ``key`` prefixes ``sys/id`` values (``KEY-1``, ``KEY-2``...) and is unique in its
    workspace (checked on create, not by an index: folders written before keys could be chosen may hold two
    equal derived keys). ``visibility`` is ``priv``, ``pub`` or ``workspace``; ``description`` is text ('' for
    none). The last two columns were added later: a folder without them gets them on open (see
    ``_ADDED_COLUMNS``), so older data folders stay readable.

``runs(run_pk, project_pk, run_id, sys_id, experiment_name, is_head, family, creation_ms, modification_ms,
owner, fork_parent_project, fork_parent_run_id, fork_step_whole, fork_step_micro, fork_depth)``
    ``run_id`` is the client's run id (``sys/custom_run_id``). ``experiment_name`` is the experiment name given
    at creation (NULL for a plain run); ``is_head`` is 1 for the run that currently holds that name in the
    project (a newer run created with the same name takes it over). These columns are mirrored as ``sys/``
    attributes (below), so the read path can treat every attribute alike.

``attributes(attr_pk, run_pk, path, type, value, last_step_whole, last_step_micro, last_ts_ms, point_count,
agg_min, agg_max, agg_sum, agg_sumsq)``
    One row per (run, path). ``type`` is a neptune-query type name: ``float int string bool datetime
    string_set file float_series string_series file_series histogram_series``. ``value`` holds:

    - float: REAL; int: INTEGER; string: TEXT; bool: INTEGER 0/1; datetime: INTEGER ms;
    - file: JSON text ``{"path", "size_bytes", "mime_type"}`` (``path`` is the blob's storage key);
    - string_set: NULL (members are in ``string_set_members``);
    - series: the value of the point with the greatest step, encoded as in ``points``.

    For series, ``last_step_*``/``last_ts_ms`` are those of the last point, ``point_count`` counts points, and
    float series keep running ``agg_min``/``agg_max``/``agg_sum``/``agg_sumsq`` (for last/min/max/average/variance
    without scanning points). The ``sys/`` attributes the service maintains are ordinary rows here:
    sys/id, sys/custom_run_id, sys/name, sys/experiment/name, sys/experiment/is_head, sys/creation_time,
    sys/modification_time, sys/owner, sys/family, sys/forking/depth, sys/description, sys/tags, sys/group_tags,
    sys/archived, sys/trashed, sys/failed and, for forked runs, sys/forking/parent and sys/forking/step.

``points(attr_pk, step_whole, step_micro, ts_ms, value, preview, completion_ratio)`` (WITHOUT ROWID, primary
key ``(attr_pk, step_whole, step_micro)``)
    Series points. The step is kept as the protocol carries it: ``whole`` and ``micro`` (0 <= micro < 10**6), so
    step = whole + micro / 1e6 exactly. ``value``: float series REAL (SQLite keeps a NaN as NULL, so a
    NULL float, here or in a float config, is the NaN the client sent; +-Inf are kept as they are);
    string series TEXT; file series JSON as for ``file``; histogram series JSON
    ``{"type": "COUNTING"|"DENSITY", "edges": [...], "values": [...]}``. ``preview`` is 1 for a preview point
    (``log_metrics(preview=True)``), which a committed point at the same step replaces.

``string_set_members(attr_pk, member)``
    Members of string_set attributes (sys/tags, sys/group_tags, user string sets).

``blobs(project_pk, path, blob_name, size, sha256, created_ms)``
    Uploaded files by storage key (``path``, chosen by the client); bytes at ``blobs/<blob_name>``.

``uploads(upload_id, project_pk, path, created_ms)``
    Multipart uploads begun and not yet completed.

``requests(request_id, project_pk, received_ms, status)`` and ``request_errors(request_id, seq, path,
ingest_code, detail)``
    The outcome of every acknowledged ingest request: ``status`` is the serialized ``RequestStatus`` protobuf
    that the bulk status check answers; ``request_errors`` lists each rejected item for check-details.

Concurrency: one server process owns a folder (the ``.lock`` flock refuses a second one, which would otherwise
invalidate the in-memory caches of the first). Inside it, writes are serialized by a lock and each ingest
request is one ``BEGIN IMMEDIATE`` transaction, so a request is applied entirely or not at all; readers use
their own per-thread connections and see committed data only (WAL).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nmig.emulators.neptune3.errors import ProjectKeyTaken

__all__ = ["Project", "ProjectKeyTaken", "Store", "StoreLocked", "now_ms", "project_key"]

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    project_pk INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_run_number INTEGER NOT NULL DEFAULT 1,
    UNIQUE (workspace, name)
);
CREATE TABLE IF NOT EXISTS runs (
    run_pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL REFERENCES projects (project_pk),
    run_id TEXT NOT NULL,
    sys_id TEXT NOT NULL,
    experiment_name TEXT,
    is_head INTEGER NOT NULL DEFAULT 0,
    family TEXT NOT NULL,
    creation_ms INTEGER NOT NULL,
    modification_ms INTEGER NOT NULL,
    owner TEXT NOT NULL,
    fork_parent_project TEXT,
    fork_parent_run_id TEXT,
    fork_step_whole INTEGER,
    fork_step_micro INTEGER,
    fork_depth INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_pk, run_id)
);
CREATE INDEX IF NOT EXISTS projects_by_key ON projects (workspace, key);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (project_pk, experiment_name);
CREATE TABLE IF NOT EXISTS attributes (
    attr_pk INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL REFERENCES runs (run_pk),
    path TEXT NOT NULL,
    type TEXT NOT NULL,
    value,
    last_step_whole INTEGER,
    last_step_micro INTEGER,
    last_ts_ms INTEGER,
    point_count INTEGER NOT NULL DEFAULT 0,
    agg_min REAL,
    agg_max REAL,
    agg_sum REAL,
    agg_sumsq REAL,
    UNIQUE (run_pk, path)
);
CREATE INDEX IF NOT EXISTS attributes_by_path ON attributes (path, type);
CREATE TABLE IF NOT EXISTS points (
    attr_pk INTEGER NOT NULL,
    step_whole INTEGER NOT NULL,
    step_micro INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value,
    preview INTEGER NOT NULL DEFAULT 0,
    completion_ratio REAL,
    PRIMARY KEY (attr_pk, step_whole, step_micro)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS string_set_members (
    attr_pk INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (attr_pk, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    project_pk INTEGER NOT NULL,
    path TEXT NOT NULL,
    blob_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (project_pk, path)
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    path TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    status BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS request_errors (
    request_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    ingest_code INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
"""

# Columns added to a table after data folders were first written: (table, column, definition). Opening a
# folder adds the ones it lacks, so the schema only ever grows and SCHEMA_VERSION stays the same.
_ADDED_COLUMNS = (
    ("projects", "visibility", "TEXT NOT NULL DEFAULT 'priv'"),
    ("projects", "description", "TEXT NOT NULL DEFAULT ''"),
)

_PROJECT_COLUMNS = "project_pk, workspace, name, key, created_ms, visibility, description"

DB_FILE = "neptune3.sqlite3"


class StoreLocked(RuntimeError):
    """Another emulator process already serves this data folder."""


@dataclass(frozen=True)
class Project:
    project_pk: int
    workspace: str
    name: str
    key: str
    created_ms: int
    visibility: str = "priv"
    description: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.workspace}/{self.name}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def project_key(name: str) -> str:
    """The short project key that prefixes sys/id, derived like the real service does from the name."""
    letters = re.sub(r"[^A-Za-z0-9]", "", name).upper()
    return (letters[:5] or "PROJ") if not letters[:1].isdigit() else "P" + letters[:4]


def _key_in_use(conn: sqlite3.Connection, workspace: str, key: str) -> bool:
    return conn.execute("SELECT 1 FROM projects WHERE workspace = ? AND key = ?", (workspace, key)).fetchone() is not None


def _free_derived_key(conn: sqlite3.Connection, workspace: str, name: str) -> str:
    """The key derived from `name`, with a number appended when another project of the workspace has it.
    ASSUMPTION: the real service generates a key no other project of the workspace uses (keys prefix run ids,
    so two projects sharing one would be ambiguous); how it picks one is not documented."""
    base = project_key(name)
    candidate, number = base, 1
    while _key_in_use(conn, workspace, candidate):
        number += 1
        suffix = str(number)
        candidate = base[: 10 - len(suffix)] + suffix  # keys are at most 10 characters
    return candidate


class Store:
    """Connections to one data folder. Thread-safe: each thread gets its own SQLite connection."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self._owned_tmp: str | None = None
        if data_dir is None:
            self._owned_tmp = tempfile.mkdtemp(prefix="nmig-neptune3-")
            data_dir = self._owned_tmp
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        self.upload_dir = self.data_dir / "uploads"
        for folder in (self.data_dir, self.blob_dir, self.upload_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / ".lock", "a+")  # noqa: SIM115 - held for the Store's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StoreLocked(f"another emulator already serves {self.data_dir}") from None
        self.db_path = self.data_dir / DB_FILE
        self._local = threading.local()
        # Every open connection by the thread that uses it: the HTTP server starts a thread per client
        # connection, so connections of finished threads are closed as new ones open (else file descriptors
        # leak over a long import).
        self._all_connections: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._connections_lock = threading.Lock()
        self.write_lock = threading.RLock()
        self._closed = False
        conn = self.connection()
        conn.executescript(SCHEMA)
        for table, column, definition in _ADDED_COLUMNS:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"{self.db_path} has schema version {version}, this emulator writes {SCHEMA_VERSION}")

    # -- connections -------------------------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; use `write()` for a transaction)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives the process being killed (the case the
            # emulator must handle); only an OS crash may lose the last transactions.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.conn = conn
            with self._connections_lock:
                for ident, (thread, old) in list(self._all_connections.items()):
                    if not thread.is_alive():
                        with contextlib.suppress(sqlite3.Error):
                            old.close()
                        del self._all_connections[ident]
                self._all_connections[threading.get_ident()] = (threading.current_thread(), conn)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One serialized write transaction: committed when the block ends, rolled back if it raises."""
        with self.write_lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries (a deferred transaction on this thread's connection)."""
        conn = self.connection()
        if conn.in_transaction:  # nested inside write() or read() on the same thread
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for _, conn in self._all_connections.values():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all_connections.clear()
        self._local = threading.local()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
        if self._owned_tmp:
            shutil.rmtree(self._owned_tmp, ignore_errors=True)

    def meta_value(self, key: str, default: str) -> str:
        """A persistent setting of this data folder, set to `default` the first time it is asked for."""
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
            return str(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    # -- projects ----------------------------------------------------------------------------------------------

    def get_project(self, workspace: str, name: str) -> Project | None:
        row = (
            self.connection()
            .execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE workspace = ? AND name = ?",
                (workspace, name),
            )
            .fetchone()
        )
        return Project(*row) if row else None

    def create_project(
        self,
        workspace: str,
        name: str,
        conn: sqlite3.Connection | None = None,
        *,
        key: str | None = None,
        visibility: str = "priv",
        description: str = "",
    ) -> Project | None:
        """Create a project; None when the name already exists in the workspace. `key` None derives one from
        the name; a given key that another project of the workspace has raises ProjectKeyTaken (the name is
        checked first). Pass `conn` to create inside an open write()."""
        if conn is None:
            with self.write() as tx:
                return self.create_project(workspace, name, tx, key=key, visibility=visibility, description=description)
        if conn.execute("SELECT 1 FROM projects WHERE workspace = ? AND name = ?", (workspace, name)).fetchone():
            return None
        if key is None:
            key = _free_derived_key(conn, workspace, name)
        elif _key_in_use(conn, workspace, key):
            raise ProjectKeyTaken(workspace, key)
        created = now_ms()
        cursor = conn.execute(
            "INSERT INTO projects (workspace, name, key, created_ms, visibility, description) VALUES (?, ?, ?, ?, ?, ?)",
            (workspace, name, key, created, visibility, description),
        )
        return Project(int(cursor.lastrowid or 0), workspace, name, key, created, visibility, description)

    def list_projects(self, workspace: str | None = None) -> list[Project]:
        sql = f"SELECT {_PROJECT_COLUMNS} FROM projects"
        args: tuple[str, ...] = ()
        if workspace is not None:
            sql += " WHERE workspace = ?"
            args = (workspace,)
        return [Project(*row) for row in self.connection().execute(sql + " ORDER BY project_pk", args)]

    # -- blobs -------------------------------------------------------------------------------------------------

    def blob_file(self, blob_name: str) -> Path:
        """Where a blob's bytes live. `blob_name` comes from the blobs table, never from a request."""
        if not re.fullmatch(r"[0-9a-f]{16,128}", blob_name):
            raise ValueError("invalid blob name")
        return self.blob_dir / blob_name

    def find_blob(self, project_pk: int, path: str) -> tuple[Path, int] | None:
        """The file holding the bytes uploaded under storage key `path`, and its size; None if not uploaded."""
        row = (
            self.connection()
            .execute("SELECT blob_name, size FROM blobs WHERE project_pk = ? AND path = ?", (project_pk, path))
            .fetchone()
        )
        return (self.blob_file(row[0]), int(row[1])) if row else None
