"""Bundle.committed, the cheap status an export's resume reads, agrees with the full reader on what is whole."""

from __future__ import annotations

import json
from pathlib import Path

from nmig.schema import Bundle, EntityWriter, write_export_info


def _bundle(out: Path) -> Bundle:
    write_export_info(out, {"source": {"workspace": "legacy", "project": "p"}})
    for n in range(1, 5):
        with EntityWriter(out, "run", f"P-{n}") as run:
            run.set_info(custom_run_id=None, source_url="http://x", modification_time=f"2024-05-0{n}T12:00:00.000Z")
            run.add_atom("params/n", "int", n)
            if n == 2:
                run.error("params/m", "the server kept failing")
    # P-3: its manifest changed after the commit; P-4: COMPLETE removed (a folder left half-made)
    manifest = out / "runs" / "P-3" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["attributes"] = []
    manifest.write_text(json.dumps(doc))
    (out / "runs" / "P-4" / "COMPLETE").unlink()
    return Bundle(out)


def test_committed_agrees_with_the_reader(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    committed = bundle.committed("run")
    assert committed == {
        "P-1": (True, "2024-05-01T12:00:00.000Z"),
        "P-2": (False, "2024-05-02T12:00:00.000Z"),
        "P-3": (False, "2024-05-03T12:00:00.000Z"),
        "P-4": (False, "2024-05-04T12:00:00.000Z"),
    }
    entities = {e.sys_id: e for e in bundle.entities("run")}
    # The full reader agrees, but for P-3: `complete` leaves checksums to verify(), which finds the change;
    # committed() compares the manifest's own checksum, so the resume exports P-3 again.
    assert {k: e.complete for k, e in entities.items() if k != "P-3"} == {k: v[0] for k, v in committed.items() if k != "P-3"}
    assert entities["P-3"].verify()


def test_unreadable_manifest_is_not_committed(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    (tmp_path / "b" / "runs" / "P-1" / "manifest.json").write_bytes(b"{not json")
    assert bundle.committed("run")["P-1"] == (False, None)
