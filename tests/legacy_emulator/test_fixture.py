"""Fixture loading: defaults a real 2.x object has, and a clear refusal naming what is wrong and where."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nmig.emulators.legacy import FixtureError, load_fixture

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"
REPO = Path(__file__).resolve().parents[2]


def _base() -> dict[str, Any]:
    return json.loads(ALL_TYPES.read_text(encoding="utf-8"))


def test_all_types_fixture_loads_with_ids_and_defaults() -> None:
    fixture = load_fixture(ALL_TYPES)
    project = fixture.projects[0]
    assert [r.sys_id for r in project.runs] == ["AT-1", "AT-2", "AT-3", "AT-4", "AT-5"]
    assert [r.trashed for r in project.runs] == [False, False, False, True, True]
    assert [m.sys_id for m in project.models] == ["AT-CLS"]
    assert [v.sys_id for v in project.model_versions] == ["AT-CLS-1", "AT-CLS-2"]
    run2 = project.runs[1].attributes
    assert run2["sys/name"].value == "series" and run2["sys/description"].value == ""
    assert run2["sys/state"].value == "idle" and run2["sys/tags"].value == ["series"]
    assert "sys/custom_run_id" not in run2
    for name in (
        "sys/modification_time",
        "sys/ping_time",
        "sys/owner",
        "sys/group_tags",
        "sys/failed",
        "sys/size",
    ):
        assert name in run2, name
    loss = run2["train/loss"].value
    assert loss.values.dtype == np.float64 and math.isnan(loss.values[1]) and loss.values[2] == math.inf
    assert project.runs[2].attributes["sys/size"].value > 0  # files count towards the run's size
    assert project.model_versions[1].attributes["sys/model_id"].value == "AT-CLS"
    # Every type of the format is used by the all-types fixture.
    used = {
        a.type
        for c in [*project.runs, *project.models, *project.model_versions]
        for a in c.attributes.values()
    }
    assert used >= {
        "float", "int", "bool", "string", "datetime", "stringSet", "floatSeries", "stringSeries", "file",
        "fileSet", "imageSeries", "artifact", "gitRef", "experimentState", "notebookRef",
    }  # fmt: skip


def test_dict_input_accepts_numpy_series() -> None:
    fixture = {
        "fixture_version": 1,
        "workspace": "w",
        "projects": [
            {
                "name": "p",
                "key": "P",
                "runs": [
                    {
                        "attributes": {
                            "m": {
                                "type": "floatSeries",
                                "steps": np.arange(5),
                                "values": np.linspace(0, 1, 5),
                                "timestamps": np.arange(5, dtype=np.int64),
                            }
                        }
                    }
                ],
            }
        ],
    }
    series = load_fixture(fixture).projects[0].runs[0].attributes["m"].value
    assert series.steps.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and series.timestamps.dtype == np.int64


def _broken(mutate: Any) -> str:
    raw = _base()
    mutate(raw)
    with pytest.raises(FixtureError) as error:
        load_fixture(copy.deepcopy(raw))
    return str(error.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: f.update(fixture_version=2), "fixture_version must be 1"),
        (lambda f: f["projects"][0]["runs"][1]["attributes"]["train/loss"]["values"].pop(),
         "project 'all-types', run AT-2, attribute 'train/loss': bad floatSeries: 5 steps but 4 values"),
        (lambda f: f["projects"][0]["runs"][0]["attributes"]["params/nan"].update(value="nan"),
         "run AT-1, attribute 'params/nan': bad float: float strings are"),
        (lambda f: f["projects"][0]["runs"][0]["attributes"].update({"x": {"type": "tensor"}}),
         "run AT-1, attribute 'x': unknown type 'tensor'"),
        (lambda f: f["projects"][0]["runs"][2]["attributes"]["files/picture"].update(content_base64="%%%"),
         "run AT-3, attribute 'files/picture': bad file: file: content_base64 is not valid base64"),
        (lambda f: f["projects"][0]["runs"][0]["attributes"]["params/started"].update(value="yesterday"),
         "run AT-1, attribute 'params/started': bad datetime: not an ISO-8601 datetime"),
        (lambda f: f["projects"][0]["runs"][0]["attributes"]["params/epochs"].pop("value"),
         "run AT-1, attribute 'params/epochs': bad int: missing field 'value'"),
        (lambda f: f["projects"][0]["runs"][0]["attributes"].update({"params/lr/x": {"type": "int", "value": 1}}),
         "run AT-1, attribute 'params/lr': is also the namespace of 'params/lr/x'"),
        (lambda f: f["projects"][0]["models"][0]["versions"][1]["attributes"]["validation/acc"].update(value=True),
         "model version AT-CLS-2, attribute 'validation/acc': bad float: expected a number"),
        (lambda f: f["projects"][0].update(key="lower"), "project 'all-types': key must be upper-case"),
        (lambda f: f["projects"][1].update(name="all-types"), "project 'all-types': duplicate project name"),
        (lambda f: f["projects"][0]["runs"][3]["attributes"].update({"sys/id": {"type": "string", "value": "AT-9"}}),
         "run AT-4, attribute 'sys/id': must be 'AT-4'"),
    ],
)  # fmt: skip
def test_malformed_fixture_names_project_object_and_path(mutate: Any, expected: str) -> None:
    assert expected in _broken(mutate)


def test_cli_refuses_a_bad_fixture_in_one_line(tmp_path: Path) -> None:
    raw = _base()
    raw["projects"][0]["runs"][1]["attributes"]["logs/stdout"]["timestamps"] = [1, 2]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "nmig", "emulate", "legacy", "--fixture", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert (
        "project 'all-types', run AT-2, attribute 'logs/stdout'" in lines[0]
        and "4 steps but 2 timestamps" in lines[0]
    )
