"""Property-based: whatever JSON a tampered manifest holds in any field, nothing of nmig raises, and a
manifest the schema passes is one the importer can plan without guessing (hypothesis draws the values).

Pure logic on bundles written with nmig.schema (no service): the schema check, the reader, the whole-run
validation, the importer's plan and inspect's views, on one run with every attribute type."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from conftest import resign  # noqa: E402

from nmig.importer.plan import PlanRefused, plan_run  # noqa: E402
from nmig.schema import Bundle, validate_entity, write_export_info  # noqa: E402
from nmig.schema.inspect import describe_entity, summarize  # noqa: E402
from nmig.schema.manifest import manifest_problems  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _sample() -> tuple[Path, dict[str, Any]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("schema_conftest", Path(__file__).parents[1] / "schema" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = Path(tempfile.mkdtemp(prefix="nmig-props-")) / "bundle"
    write_export_info(root, {"source": {"workspace": "ws", "project": "proj"}, "selection": {}})
    module.write_sample_run(root)
    return root, json.loads((root / "runs" / "VIS-1" / "manifest.json").read_text())


SAMPLE_ROOT, SAMPLE = _sample()


def _places(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside the manifest (each field of each attribute, nested ones included)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _places(sub, (*prefix, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += _places(sub, (*prefix, index))
    return found


PLACES = [p for p in _places(SAMPLE) if p[0] not in ("format", "format_version")]


def _set(doc: Any, place: tuple[Any, ...], value: Any) -> None:
    for key in place[:-1]:
        doc = doc[key]
    doc[place[-1]] = value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=_json)
def test_any_value_anywhere_is_reported_or_planned_never_raised(place: tuple[Any, ...], value: Any) -> None:
    manifest = copy.deepcopy(SAMPLE)
    _set(manifest, place, value)
    problems, _ = manifest_problems(manifest)  # never raises
    work = Path(tempfile.mkdtemp(prefix="nmig-prop-"))
    try:
        root = work / "bundle"
        shutil.copytree(SAMPLE_ROOT, root)
        run_dir = root / "runs" / "VIS-1"
        (run_dir / "manifest.json").write_text(json.dumps(manifest))  # NaN/Infinity as Python writes them
        resign(run_dir)
        bundle = Bundle(root)
        (entity,) = bundle.entities("run")
        found = validate_entity(entity)
        summarize(bundle, check=True)
        describe_entity(entity, check=True)
        try:
            plan_run(entity)
            planned = True
        except PlanRefused:
            planned = False
        if problems:
            assert not planned and found, (place, value)  # the schema's refusal is the importer's
        assert all("\n" not in p for p in found)
    finally:
        shutil.rmtree(work, ignore_errors=True)
