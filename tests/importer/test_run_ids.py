"""Every legacy run lands when a custom_run_id equals another run's sys/id (issue 10, item 1): the rule picks
the same 3.x ids on a re-run, a resume, a --runs subset and under 4 workers, both runs are reported, and
`nmig verify` is green."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.cli import main
from nmig.emulators.neptune3 import serve_neptune3
from nmig.importer.plan import claims_a_legacy_id

pytestmark = pytest.mark.timeout(240)

EXPECTED = {"CID-1": "CID-1", "CID-2": "CID-1~CID-2", "CID-3": "CID-3~CID-4~CID-3", "CID-4": "CID-3~CID-4",
            "CID-5": "plain", "CID-6": "CID-99~CID-6", "CID-7": "mine~CID-7", "CID-8": "a_b~CID-8", "CID-9": "a_b"}


def _run(custom: str | None, value: float) -> Any:
    def fill(w: Any) -> None:
        if custom is not None:
            w.set_info(custom_run_id=custom)
            w.add_atom("sys/custom_run_id", "string", custom)
        w.add_atom("params/value", "float", value)
        w.add_float_points("m/x", [0, 1], [value, value + 1], [T0_MS, T0_MS + 1])

    return fill


def _bundle(out: Path) -> Path:
    return write_bundle(out, {
        "CID-1": _run(None, 1.0),
        "CID-2": _run("CID-1", 2.0),  # claims CID-1's id
        "CID-3": _run("CID-3~CID-4", 3.0),  # free text shaped like CID-4's suffixed id: suffixed itself
        "CID-4": _run("CID-3", 4.0),  # claims CID-3's id
        "CID-5": _run("plain", 5.0),
        "CID-6": _run("CID-99", 6.0),  # a legacy id no run of the bundle has: suffixed all the same
        "CID-7": _run("mine~CID-7", 7.0),  # ends with its own sys/id: no other run can have it
        "CID-8": _run("a/b", 8.0),  # "/" replaced it would be CID-9's id: suffixed
        "CID-9": _run("a_b", 9.0),
    })


def test_the_rule_reads_only_the_runs_own_ids() -> None:
    assert claims_a_legacy_id("VIS-7", "VIS-12") and not claims_a_legacy_id("VIS-12", "VIS-12")
    assert not claims_a_legacy_id("OTHER-7", "VIS-12") and not claims_a_legacy_id("VIS-7a", "VIS-12")
    assert not claims_a_legacy_id("baseline", "VIS-12") and not claims_a_legacy_id("x~VIS-12", "VIS-12")
    assert claims_a_legacy_id("x~VIS-7", "VIS-12") and not claims_a_legacy_id("x~y", "VIS-12")


def _import(bundle: Path, token: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/ids", "--api-token", token, "--quiet", *args])


def test_colliding_runs_all_land_with_the_same_ids_whatever_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neptune_query
    from neptune_query import runs as nq

    monkeypatch.chdir(tmp_path)
    bundle = _bundle(tmp_path / "b")
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        # the claimants first, alone, then everything with 4 workers, then a re-run of the whole bundle
        assert _import(bundle, target.api_token, "--runs", "CID-2", "--runs", "CID-4").exit_code == 0
        assert _import(bundle, target.api_token, "--max-workers", "4").exit_code == 0
        again = _import(bundle, target.api_token, "--max-workers", "4", "--state", str(tmp_path / "fresh-state.json"))
        assert again.exit_code == 0, again.output
        neptune_query.set_api_token(target.api_token)
        table = nq.fetch_runs_table(project="demo/ids", attributes=["params/value", "legacy_sys/id"])
        assert sorted(table.index) == sorted(EXPECTED.values())
        for sys_id, run_id in EXPECTED.items():
            assert table.loc[run_id, "legacy_sys/id"] == sys_id
            assert table.loc[run_id, "params/value"] == float(sys_id.split("-")[1])
        verified = CliRunner().invoke(main, ["verify", str(bundle), "--project", "demo/ids", "--api-token", target.api_token, "--quiet"])
        assert verified.exit_code == 0, verified.output
    doc = report(bundle)
    assert doc["targets"] == EXPECTED
    adjusted = {i["run"] for i in items(doc, "run_id_adjusted")}
    assert adjusted == {"CID-2", "CID-3", "CID-4", "CID-6", "CID-8"}
    assert {i["run"] for i in items(doc, "run_id_shared")} == {"CID-1", "CID-3"}
    assert not items(doc, "refused") and not items(doc, "failed")
