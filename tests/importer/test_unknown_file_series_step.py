"""A file-series point whose step the 2.x server did not give (no `x` in its channel value) is exported with a
null step and, on import, not sent and reported (3.x file series need a step; none is invented)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from importer_helpers import items, report

from nmig.emulators.http import EmulatorInfo

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"


def test_a_point_without_a_step_is_reported_not_invented(neptune3: EmulatorInfo, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.legacy import serve_legacy

    fixture = copy.deepcopy(json.loads(FIXTURE.read_text("utf-8")))
    fixture["projects"][0]["runs"][1]["attributes"]["images/samples"]["steps"] = [0, None]
    bundle = tmp_path / "bundle"
    with serve_legacy(fixture) as legacy:
        result = CliRunner().invoke(
            main, ["export", "--project", "acme/all-types", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet"]
        )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main, ["import", str(bundle), "--project", "demo/unknown-step", "--api-token", neptune3.api_token, "--quiet"]
    )
    assert result.exit_code == 0, result.output
    reported = [i for i in items(report(bundle), run="AT-2") if i.get("path") == "images/samples"]
    (unsent,) = [i for i in reported if i["case"] == "step_out_of_range"]
    assert unsent["detail"].startswith("1 point(s)") and "first at step nan" in unsent["detail"], unsent
