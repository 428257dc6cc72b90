"""Pure logic of the read path on plain data: the run-filter language, step keys, search tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from neptune_query.filters import Attribute, Filter

from nmig.emulators.neptune3.retrieval_query import AttributeRef, QueryError, TypedValue, parse_query
from nmig.emulators.neptune3.retrieval_runs import AttributeSelection, RunIdentifier
from nmig.emulators.neptune3.retrieval_series import (
    HIGHEST,
    LOWEST,
    _decode_token,
    _encode_token,
    next_key,
    request_bounds,
    step_key,
)

RUN_VALUES = {
    "sys/custom_run_id": TypedValue("string", "run-7"),
    "sys/tags": TypedValue("stringSet", frozenset({"baseline", "gpu"})),
    "sys/creation_time": TypedValue("datetime", 1_714_564_800_123),  # 2024-05-01T12:00:00.123Z
    "lr": TypedValue("float", 0.01),
    "epochs": TypedValue("int", 10),
    "flag": TypedValue("bool", True),
    "loss": TypedValue("floatSeries", 0.25),
    "note": TypedValue("string", 'say "hi" \\ bye'),
}


def lookup(ref: AttributeRef) -> TypedValue | None:
    found = RUN_VALUES.get(ref.name)
    if found is None or (ref.type is not None and ref.type != found.type):
        return None
    return found


def matches(query_filter: Filter) -> bool:
    """Parse the exact text neptune-query sends for `query_filter` and evaluate it on RUN_VALUES."""
    node = parse_query(str(query_filter))
    assert node is not None
    return node.evaluate(lookup)


@pytest.mark.parametrize(
    ("query_filter", "expected"),
    [
        (Filter.eq("lr", 0.01), True),
        (Filter.ne("lr", 0.01), False),
        (Filter.gt("epochs", 9), True),
        (Filter.ge("epochs", 10), True),
        (Filter.lt("epochs", 10), False),
        (Filter.le(Attribute("loss", type="float_series"), 0.25), True),
        (Filter.eq("flag", True), True),
        (Filter.eq("flag", False), False),
        (Filter.eq("note", 'say "hi" \\ bye'), True),
        (Filter.matches("sys/custom_run_id", r"^run-\d$"), True),
        (Filter.matches("sys/custom_run_id", "nope"), False),
        (Filter.matches("sys/custom_run_id", "run & !7"), False),
        (Filter.contains_all("sys/tags", ["gpu", "baseline"]), True),
        (Filter.contains_all("sys/tags", ["gpu", "cpu"]), False),
        (Filter.contains_none("sys/tags", ["cpu"]), True),
        (Filter.exists("lr"), True),
        (Filter.exists("missing"), False),
        (~Filter.exists("missing"), True),
        (Filter.gt(Attribute("sys/creation_time", type="datetime"), dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)), True),
        (Filter.lt(Attribute("sys/creation_time", type="datetime"), dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)), False),
        (Filter.eq("lr", 0.01) & Filter.eq("epochs", 11), False),
        (Filter.eq("lr", 0.01) | Filter.eq("epochs", 11), True),
        (~(Filter.eq("lr", 0.01) | Filter.eq("epochs", 11)), False),
        # A predicate on a missing attribute is false whatever the operator (assumption documented in the module).
        (Filter.ne("missing", 1), False),
        # A typed attribute of another type does not match.
        (Filter.eq(Attribute("epochs", type="string"), "10"), False),
    ],
)
def test_filters_neptune_query_sends_evaluate_as_documented(query_filter: Filter, expected: bool) -> None:
    assert matches(query_filter) is expected


def test_aggregations_and_types_are_parsed() -> None:
    node = parse_query("variance(`a/b c`:floatSeries) > \"0.5\"")
    assert node is not None
    assert node.attributes() == [AttributeRef("a/b c", "floatSeries", "variance")]


def test_empty_query_matches_everything() -> None:
    assert parse_query("") is None
    assert parse_query("   ") is None


@pytest.mark.parametrize(
    "text",
    ["`a` ==", "`a` LIKE \"x\"", "(`a` EXISTS", "`a` EXISTS junk", "`a` == \"x", "`a` ~ \"x\""],
)
def test_malformed_queries_are_refused(text: str) -> None:
    with pytest.raises(QueryError):
        parse_query(text)


def test_a_literal_of_the_wrong_type_is_an_error_not_a_silent_false() -> None:
    node = parse_query('`lr`:float > "abc"')
    assert node is not None
    with pytest.raises(QueryError):
        node.evaluate(lookup)


@pytest.mark.parametrize(
    ("step", "key"),
    [(0.0, (0, 0)), (1.5, (1, 500_000)), (0.1, (0, 100_000)), (3.000001, (3, 1)), (-0.5, (-1, 500_000)),
     (2.9999999, (3, 0)), (123456789.25, (123456789, 250_000))],
)
def test_step_keys_round_to_the_nearest_microstep(step: float, key: tuple[int, int]) -> None:
    assert step_key(step) == key


def test_step_key_refuses_non_finite_steps() -> None:
    with pytest.raises(QueryError):
        step_key(float("nan"))


def test_next_key_carries_into_the_whole_part() -> None:
    assert next_key((4, 999_999)) == (5, 0)
    assert next_key((4, 7)) == (4, 8)


def test_request_bounds_are_inclusive_on_both_ends() -> None:
    assert request_bounds({"from": 2, "to": 5}) == ((2, 0), (5, 1))
    assert request_bounds({"from": None, "to": None}) == (LOWEST, HIGHEST)
    assert request_bounds(None) == (LOWEST, HIGHEST)


def test_search_tokens_round_trip_and_reject_garbage() -> None:
    assert _decode_token(_encode_token((12, 34), 56)) == ((12, 34), 56)
    assert _decode_token(_encode_token(None, 0)) == (None, 0)
    for garbage in ("x:y:z", "1:2", "1:2000000:3", "1:2:-1"):
        with pytest.raises(QueryError):
            _decode_token(garbage)


def test_run_identifiers_in_both_forms() -> None:
    assert RunIdentifier.parse("ws/proj/PROJ-12") == RunIdentifier("ws/proj", sys_id="PROJ-12")
    assert RunIdentifier.parse("CUSTOM/ws/proj/my/run") == RunIdentifier("ws/proj", run_id="my/run")
    for bad in ("PROJ-12", "ws/proj/a/b", "CUSTOM/ws/proj"):
        with pytest.raises(QueryError):
            RunIdentifier.parse(bad)


def test_attribute_selection_combines_names_regexes_and_types() -> None:
    selection = AttributeSelection.from_params(
        {
            "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["^metrics/"], "mustNotMatchRegexes": ["val"]}]},
            "attributeFilter": [{"attributeType": "floatSeries"}],
        },
        by_names=False,
        by_one_regex=False,
    )
    assert selection.accepts("metrics/loss", "float_series")
    assert not selection.accepts("metrics/val_loss", "float_series")
    assert not selection.accepts("metrics/loss", "float")
    assert not selection.accepts("other/loss", "float_series")
    exact = AttributeSelection.from_params({"attributeNamesFilter": ["a", "b"]}, by_names=True, by_one_regex=False)
    assert exact.accepts("a", "int") and not exact.accepts("c", "int")
    # a field the endpoint's model lacks is not read
    ignored = AttributeSelection.from_params({"attributeNamesFilter": ["a"], "attributeNameRegex": "^z"}, by_names=False, by_one_regex=False)
    assert ignored.accepts("c", "int")
    one_regex = AttributeSelection.from_params({"attributeNameRegex": "^z"}, by_names=False, by_one_regex=True)
    assert one_regex.accepts("zz", "int") and not one_regex.accepts("a", "int")


# -- fork lineage on a store filled directly (cases the client cannot produce: own points below the fork step) --


@pytest.fixture
def lineage_store(tmp_path: Any) -> Any:
    from nmig.emulators.neptune3.store import Store

    store = Store(tmp_path / "data")
    conn = store.connection()
    conn.execute("INSERT INTO projects (workspace, name, key, created_ms) VALUES ('demo', 'p', 'P', 0)")

    def add_run(run_id: str, parent: str | None, fork_step: float | None, steps: list[float]) -> None:
        whole, micro = step_key(fork_step) if fork_step is not None else (None, None)
        run_pk = conn.execute(
            "INSERT INTO runs (project_pk, run_id, sys_id, family, creation_ms, modification_ms, owner,"
            " fork_parent_project, fork_parent_run_id, fork_step_whole, fork_step_micro)"
            " VALUES (1, ?, ?, ?, 0, 0, 'o', ?, ?, ?, ?) RETURNING run_pk",
            (run_id, f"P-{run_id}", run_id, "demo/p" if parent else None, parent, whole, micro),
        ).fetchone()[0]
        attr_pk = conn.execute(
            "INSERT INTO attributes (run_pk, path, type, point_count) VALUES (?, 'm', 'float_series', ?)"
            " RETURNING attr_pk",
            (run_pk, len(steps)),
        ).fetchone()[0]
        conn.executemany(
            "INSERT INTO points (attr_pk, step_whole, step_micro, ts_ms, value) VALUES (?, ?, ?, 0, ?)",
            [(attr_pk, *step_key(step), step * 10) for step in steps],
        )

    add_run("P", None, None, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    add_run("C", "P", 5, [4.5, 6, 7])
    add_run("G", "C", 6, [8, 9])
    yield store
    store.close()


def _lineage_steps(store: Any, run_id: str, full: bool, descending: bool = True, limit: int | None = None,
                   lo: tuple[int, int] = LOWEST, hi: tuple[int, int] = HIGHEST) -> list[float]:
    from nmig.emulators.neptune3.retrieval_runs import find_run
    from nmig.emulators.neptune3.retrieval_series import lineage_segments, read_points

    conn = store.connection()
    run = find_run(conn, 1, RunIdentifier("demo/p", run_id=run_id))
    assert run is not None

    def parent_of(child: Any) -> Any:
        return find_run(conn, 1, RunIdentifier("demo/p", run_id=child.fork_parent_run_id))

    segments = lineage_segments(conn, run, "m", frozenset({"float_series"}), full, parent_of)
    return [w + m / 1e6 for w, m, *_ in read_points(conn, segments, lo, hi, descending, limit)]


def test_lineage_keeps_own_points_and_inherits_only_below_them_and_the_fork_step(lineage_store: Any) -> None:
    assert _lineage_steps(lineage_store, "C", full=True, descending=False) == [1, 2, 3, 4, 4.5, 6, 7]
    assert _lineage_steps(lineage_store, "G", full=True, descending=False) == [1, 2, 3, 4, 4.5, 6, 8, 9]
    assert _lineage_steps(lineage_store, "G", full=False, descending=False) == [8, 9]
    assert _lineage_steps(lineage_store, "P", full=True, descending=False) == list(range(1, 11))


def test_lineage_pages_across_runs_in_both_directions(lineage_store: Any) -> None:
    assert _lineage_steps(lineage_store, "G", full=True, limit=4) == [9, 8, 6, 4.5]
    assert _lineage_steps(lineage_store, "G", full=True, limit=3, hi=step_key(4.5)) == [4, 3, 2]
    assert _lineage_steps(lineage_store, "G", full=True, descending=False, limit=3, lo=next_key(step_key(4))) == [4.5, 6, 8]


def test_fast_float_encoding_equals_point_by_point_protobuf() -> None:
    from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
        ProtoFloatSeriesValuesDTO,
    )

    from nmig.emulators.neptune3.retrieval_series import encode_committed_float_points

    rows = [
        (2**35, -3.5, float("inf")),
        (1_714_564_800_123, 0.000001, -0.0),
        (1_714_564_800_124, 1e11 + 0.25, 1e308),
        (2**42 - 1, 7.0, float("nan")),
        (1_714_564_800_125, 0.0, 0.0),  # zeros: written explicitly here, omitted by protobuf; same message
    ]
    expected = ProtoFloatSeriesValuesDTO()
    for ts_ms, step, value in rows:
        expected.values.add(timestamp_millis=ts_ms, step=step, value=value, completion_ratio=1.0)
    encoded = encode_committed_float_points(rows)
    assert encoded is not None
    decoded = ProtoFloatSeriesValuesDTO.FromString(encoded)
    assert decoded.SerializeToString() == expected.SerializeToString()
    assert [(p.timestamp_millis, p.step) for p in decoded.values] == [(ts, step) for ts, step, _ in rows]
    assert encode_committed_float_points([]) == b""
    # Outside the fixed layout: the caller falls back to point-by-point encoding.
    assert encode_committed_float_points([(2**35 - 1, 1.0, 1.0)]) is None
    assert encode_committed_float_points([(-5, 1.0, 1.0)]) is None


def test_bucket_formulas_name_one_attribute_with_escapes() -> None:
    from neptune_query.internal.retrieval.metric_buckets import attribute_name_to_formula

    from nmig.emulators.neptune3.retrieval_buckets import formula_attribute

    for name in ("m/loss", "a${b}c", "back\\slash", "dollar$", "{}"):
        assert formula_attribute(attribute_name_to_formula(name)) == name
    for formula in ("m/loss", "${a} + ${b}", "${a", "${a}b"):
        with pytest.raises(QueryError):
            formula_attribute(formula)


def test_string_pages_stop_at_the_byte_budget_and_continue_from_the_token(tmp_path: Any) -> None:
    from nmig.emulators.neptune3 import retrieval_series as series
    from nmig.emulators.neptune3.store import Store

    store = Store(tmp_path / "data")
    try:
        conn = store.connection()
        conn.execute("INSERT INTO projects (workspace, name, key, created_ms) VALUES ('demo', 'p', 'P', 0)")
        conn.execute(
            "INSERT INTO runs (project_pk, run_id, sys_id, family, creation_ms, modification_ms, owner)"
            " VALUES (1, 'r', 'P-1', 'r', 0, 0, 'o')"
        )
        attr_pk = conn.execute(
            "INSERT INTO attributes (run_pk, path, type, point_count) VALUES (1, 's', 'string_series', 20)"
            " RETURNING attr_pk"
        ).fetchone()[0]
        big = "x" * (1024 * 1024)
        conn.executemany(
            "INSERT INTO points (attr_pk, step_whole, step_micro, ts_ms, value) VALUES (?, ?, 0, ?, ?)",
            [(attr_pk, step, 1_700_000_000_000 + step, f"{step:02d}{big}") for step in range(20)],
        )
        segments = [series.Segment(attr_pk, series.LOWEST, series.HIGHEST, 20)]
        got: list[str] = []
        token = None
        for _ in range(10):
            request = series.SeriesRequest("0", segments, "string_series", token)
            answer = series.series_response(conn, [request], None, False, None).series[0]
            values = [point.object.stringValue[:2] for point in answer.seriesValues.values]
            assert len(values) * len(big) <= series.RESPONSE_BYTES + len(big)
            got.extend(values)
            if answer.searchAfter.finished:
                break
            token = answer.searchAfter.token
        assert got == [f"{step:02d}" for step in range(20)]
    finally:
        store.close()


def _stored(type_: str, value: Any, points: int = 0, **more: Any) -> Any:
    from nmig.emulators.neptune3.retrieval_attributes import AttributeRow

    last = (3, 500_000) if points else (None, None)
    aggregates = (more.get("agg_min"), more.get("agg_max"), more.get("agg_sum"), more.get("agg_sumsq"))
    return AttributeRow(1, 1, "a/b", type_, value, *last, 0, points, *aggregates, members=more.get("members", frozenset()))


def test_every_stored_type_is_answered_in_its_properties_message() -> None:
    import json
    import math

    from nmig.emulators.neptune3.retrieval_attributes import to_proto

    def answer(row: Any) -> tuple[str, Any]:
        message = to_proto(row)
        assert message.name == "a/b" and message.type == ({"float_series": "floatSeries", "string_set": "stringSet",
            "string_series": "stringSeries", "file": "fileRef", "file_series": "fileRefSeries",
            "histogram_series": "histogramSeries"}.get(row.type, row.type))
        present = [field.name for field, _ in message.ListFields() if field.name.endswith("_properties")]
        if not present:
            return "", None
        assert len(present) == 1
        props = getattr(message, present[0])
        assert props.attribute_name == "a/b" and props.attribute_type == message.type
        return present[0], props

    assert math.isnan(answer(_stored("float", None))[1].value)  # a NaN config is stored as NULL
    assert answer(_stored("float", 0.5))[1].value == 0.5
    assert answer(_stored("int", 7))[1].value == 7
    assert answer(_stored("string", "x"))[1].value == "x"
    assert answer(_stored("bool", 1))[1].value is True
    assert answer(_stored("datetime", 1_714_564_800_123))[1].value == 1_714_564_800_123
    kind, props = answer(_stored("string_set", None, members=frozenset({"b", "a"})))
    assert kind == "string_set_properties" and list(props.value) == ["a", "b"]
    file_ref = json.dumps({"path": "p/f.bin", "size_bytes": 3, "mime_type": "application/octet-stream"})
    kind, props = answer(_stored("file", file_ref))
    assert (kind, props.path, props.sizeBytes, props.mimeType) == (
        "file_ref_properties", "p/f.bin", 3, "application/octet-stream")
    kind, props = answer(_stored("float_series", 2.0, points=2, agg_min=1.0, agg_max=2.0, agg_sum=3.0, agg_sumsq=5.0))
    assert kind == "float_series_properties" and props.last_step == 3.5
    assert (props.last, props.min, props.max, props.average, props.variance) == (2.0, 1.0, 2.0, 1.5, 0.25)
    kind, props = answer(_stored("float_series", None))
    assert kind == "float_series_properties" and not props.HasField("last_step") and not props.HasField("last")
    assert answer(_stored("string_series", "line", points=1))[1].last == "line"
    assert not answer(_stored("string_series", None))[1].HasField("last")
    assert answer(_stored("file_series", file_ref, points=1))[1].last.path == "p/f.bin"
    histogram = json.dumps({"type": "COUNTING", "edges": [0.0, 1.0], "values": [2.0]})
    kind, props = answer(_stored("histogram_series", histogram, points=1))
    assert (kind, props.last.type, list(props.last.edges), list(props.last.values)) == (
        "histogram_series_properties", "COUNTING", [0.0, 1.0], [2.0])
    assert answer(_stored("histogram_series", "not json", points=1))[1].last.type == ""  # damaged: served empty
    assert answer(_stored("newType", "v")) == ("", None)


def test_steps_are_served_as_the_nearest_double_and_read_back_to_the_same_key() -> None:
    import sqlite3

    from nmig.emulators.neptune3.retrieval_attributes import STEP_SQL, step_value

    cases = [(43, 132479, 43.132479), (999999999999, 0, 999999999999.0), (2**39, 250000, 2.0**39 + 0.25),
             (1_000_000_000, 500000, 1e9 + 0.5), (8589934591, 999999, 8589934591.999999), (0, 1, 1e-6)]
    conn = sqlite3.connect(":memory:")
    for whole, micro, step in cases:
        assert step_value(whole, micro) == step, (whole, micro)
        sql = STEP_SQL.replace("step_whole", str(whole)).replace("step_micro", str(micro))
        assert conn.execute(f"SELECT {sql}").fetchone()[0] == step, (whole, micro)
        assert step_key(step) == (whole, micro)
