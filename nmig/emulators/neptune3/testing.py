"""Test API of the 3.x emulator: damage what a stopped emulator holds, as a lost write or a faulty service
would, so that a test can show `nmig verify` finds each kind of difference. Tests use this instead of SQL on
the emulator's tables, so the storage layout can change without touching them (whoever changes the layout
keeps this module working).

    with Damage(data_dir, "demo/vision") as damage:     # the emulator serving data_dir must be stopped
        damage.delete_point("VIS-1", "train/loss", step=123)
        damage.set_point("VIS-1", "val/loss", step=3, value=0.5)
        damage.blob("VIS-1", "model/weights").unlink()

Nothing here keeps the service's own bookkeeping (a series' last value and aggregates, modification times)
in step: the damage is only what a reader of the points, values and files would see differ. Steps are given
as the client logs them; a series point is found by its exact step.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from nmig.emulators.neptune3.store import Store

# The stored type of a config value, by Python type (bool before int: a bool is an int).
_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"))


def _step_parts(step: float) -> tuple[int, int]:
    whole = math.floor(step)
    return whole, round((step - whole) * 1_000_000)


class Damage:
    """Changes to one project of a stopped emulator's data folder; each raises LookupError when what it
    should change is not there (a test's damage that changed nothing would prove nothing)."""

    def __init__(self, data_dir: str | os.PathLike[str], project: str) -> None:
        self._store = Store(data_dir)  # takes the folder's lock: no server may be serving it
        workspace, _, name = project.partition("/")
        found = self._store.get_project(workspace, name)
        if found is None:
            self._store.close()
            raise LookupError(f"no project {project} in {data_dir}")
        self._project_pk = found.project_pk

    def __enter__(self) -> Damage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    # ---- lookups -----------------------------------------------------------------------------------------

    def _run_pk(self, conn: Any, run_id: str) -> int:
        row = conn.execute("SELECT run_pk FROM runs WHERE project_pk = ? AND run_id = ?", (self._project_pk, run_id)).fetchone()
        if row is None:
            raise LookupError(f"no run {run_id}")
        return int(row[0])

    def _attr_pk(self, conn: Any, run_id: str, path: str) -> int:
        row = conn.execute(
            "SELECT attr_pk FROM attributes WHERE run_pk = ? AND path = ?", (self._run_pk(conn, run_id), path)
        ).fetchone()
        if row is None:
            raise LookupError(f"no attribute {path} in run {run_id}")
        return int(row[0])

    @staticmethod
    def _changed(cursor: Any, what: str) -> None:
        if cursor.rowcount < 1:
            raise LookupError(f"nothing to change: {what}")

    # ---- runs and attributes -----------------------------------------------------------------------------

    def delete_run(self, run_id: str) -> None:
        """The run is gone from the project (as if it was never created)."""
        with self._store.write() as conn:
            self._changed(conn.execute("DELETE FROM runs WHERE run_pk = ?", (self._run_pk(conn, run_id),)), run_id)

    def set_config(self, run_id: str, path: str, value: bool | int | float | str) -> None:
        """A config holds another value, of the type of `value` (so a type can change too)."""
        type_ = next(name for python_type, name in _TYPES if isinstance(value, python_type))
        with self._store.write() as conn:
            attr_pk = self._attr_pk(conn, run_id, path)
            conn.execute("UPDATE attributes SET type = ?, value = ? WHERE attr_pk = ?", (type_, value, attr_pk))

    def add_config(self, run_id: str, path: str, value: str) -> None:
        """A string config the run never had."""
        with self._store.write() as conn:
            run_pk = self._run_pk(conn, run_id)
            conn.execute("INSERT INTO attributes (run_pk, path, type, value) VALUES (?, ?, 'string', ?)", (run_pk, path, value))

    def delete_attribute(self, run_id: str, path: str) -> None:
        """An attribute (config, file, series with its points) is gone."""
        with self._store.write() as conn:
            attr_pk = self._attr_pk(conn, run_id, path)
            conn.execute("DELETE FROM points WHERE attr_pk = ?", (attr_pk,))
            conn.execute("DELETE FROM string_set_members WHERE attr_pk = ?", (attr_pk,))
            conn.execute("DELETE FROM attributes WHERE attr_pk = ?", (attr_pk,))

    def remove_member(self, run_id: str, path: str, member: str) -> None:
        """A string set (e.g. sys/tags) lost one member."""
        with self._store.write() as conn:
            attr_pk = self._attr_pk(conn, run_id, path)
            cursor = conn.execute("DELETE FROM string_set_members WHERE attr_pk = ? AND member = ?", (attr_pk, member))
            self._changed(cursor, f"{member!r} in {path}")

    # ---- series points -----------------------------------------------------------------------------------

    def delete_point(self, run_id: str, path: str, step: float) -> None:
        whole, micro = _step_parts(step)
        with self._store.write() as conn:
            attr_pk = self._attr_pk(conn, run_id, path)
            cursor = conn.execute(
                "DELETE FROM points WHERE attr_pk = ? AND step_whole = ? AND step_micro = ?", (attr_pk, whole, micro)
            )
            self._changed(cursor, f"{path} at step {step}")

    def set_point(
        self,
        run_id: str,
        path: str,
        step: float,
        *,
        value: float | str | None = None,
        shift_ms: int = 0,
        to_step: float | None = None,
    ) -> None:
        """One point of a series changed: another `value`, its timestamp moved by `shift_ms`, or a copy of it
        at `to_step` (the point itself stays)."""
        whole, micro = _step_parts(step)
        where = "attr_pk = ? AND step_whole = ? AND step_micro = ?"
        with self._store.write() as conn:
            key = (self._attr_pk(conn, run_id, path), whole, micro)
            if value is not None:
                self._changed(conn.execute(f"UPDATE points SET value = ? WHERE {where}", (value, *key)), f"{path} at {step}")
            if shift_ms:
                self._changed(conn.execute(f"UPDATE points SET ts_ms = ts_ms + ? WHERE {where}", (shift_ms, *key)), f"{path} at {step}")
            if to_step is not None:
                cursor = conn.execute(
                    "INSERT INTO points (attr_pk, step_whole, step_micro, ts_ms, value, preview, completion_ratio) "
                    f"SELECT attr_pk, ?, ?, ts_ms, value, preview, completion_ratio FROM points WHERE {where}",
                    (*_step_parts(to_step), *key),
                )
                self._changed(cursor, f"{path} at {step}")

    def point_value(self, run_id: str, path: str, step: float) -> Any:
        """What a point holds (for a test that changes a value relative to it)."""
        whole, micro = _step_parts(step)
        with self._store.read() as conn:
            row = conn.execute(
                "SELECT value FROM points WHERE attr_pk = ? AND step_whole = ? AND step_micro = ?",
                (self._attr_pk(conn, run_id, path), whole, micro),
            ).fetchone()
        if row is None:
            raise LookupError(f"no point of {path} at step {step}")
        return row[0]

    # ---- files -------------------------------------------------------------------------------------------

    def blob(self, run_id: str, path: str, step: float | None = None) -> Path:
        """The stored bytes of a file attribute, or of a file series' point at `step`: a test may rewrite or
        delete the file."""
        with self._store.read() as conn:
            attr_pk = self._attr_pk(conn, run_id, path)
            if step is None:
                row = conn.execute("SELECT value FROM attributes WHERE attr_pk = ?", (attr_pk,)).fetchone()
            else:
                whole, micro = _step_parts(step)
                row = conn.execute(
                    "SELECT value FROM points WHERE attr_pk = ? AND step_whole = ? AND step_micro = ?", (attr_pk, whole, micro)
                ).fetchone()
        if row is None or row[0] is None:
            raise LookupError(f"no file at {path}" + (f", step {step}" if step is not None else ""))
        found = self._store.find_blob(self._project_pk, json.loads(row[0])["path"])
        if found is None:
            raise LookupError(f"the file at {path} was never uploaded")
        return found[0]
