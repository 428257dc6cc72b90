"""Pure logic of the read path on plain data: the run-filter language, step keys, search tokens."""

from __future__ import annotations

import datetime as dt

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
        }
    )
    assert selection.accepts("metrics/loss", "float_series")
    assert not selection.accepts("metrics/val_loss", "float_series")
    assert not selection.accepts("metrics/loss", "float")
    assert not selection.accepts("other/loss", "float_series")
    exact = AttributeSelection.from_params({"attributeNamesFilter": ["a", "b"]})
    assert exact.accepts("a", "int") and not exact.accepts("c", "int")
