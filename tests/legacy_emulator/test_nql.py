"""The NQL subset, on plain containers loaded from the all-types fixture (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmig.emulators.legacy import load_fixture
from nmig.emulators.legacy.nql import NqlSyntaxError, compile_query

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"
RUNS = load_fixture(ALL_TYPES).projects[0].runs


def _ids(query: str) -> list[str]:
    predicate = compile_query(query)
    return [run.sys_id for run in RUNS if predicate(run)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["AT-1", "AT-2", "AT-3", "AT-4", "AT-5"]),
        ("(`sys/trashed`:bool = true)", ["AT-4", "AT-5"]),
        ('((`sys/id`:string = "AT-1") OR (`sys/id`:string = "AT-3"))', ["AT-1", "AT-3"]),
        ("`params/epochs`:integer > 3", ["AT-1", "AT-3"]),
        ("`params/epochs`:int < 10", ["AT-2"]),
        ("params/epochs >= 10 and params/epochs <= 10", ["AT-1"]),
        ("`params/lr`:float != 0.01", ["AT-1", "AT-3", "AT-4"]),  # no params/lr on AT-5: not a match
        ("`params/lr`:int = 0.1", ["AT-3"]),  # int and float compare numerically
        ("`params/augment`:bool = TRUE", ["AT-1"]),
        ('`sys/creation_time`:datetime >= "2023-03-03T10:00:00Z"', ["AT-3", "AT-4", "AT-5"]),
        ('`sys/creation_time`:datetime > "2023-03-01T10:00:00.123Z"', ["AT-2", "AT-3", "AT-4", "AT-5"]),
        ('`sys/tags`:stringSet CONTAINS "with space"', ["AT-1"]),
        ("`sys/name`:string CONTAINS 'trashed'", ["AT-4", "AT-5"]),
        ('`sys/state`:experimentState = "inactive"', ["AT-2", "AT-3", "AT-4", "AT-5"]),
        ('`sys/state`:experimentState = "running"', ["AT-1"]),
        ('NOT (`sys/trashed`:bool = true) AND NOT `params/optimizer` = "adam"', ["AT-2"]),
        ("`params/nan`:float = 1 OR `params/nan`:float != 1", []),  # NaN compares false
        ("`params/optimizer`:int = 3", []),  # the attribute is a string: no match
        ("`params/learning rate`:float > 0.2", ["AT-1"]),
        ("`métriques/précision finale`:float = 0.875", ["AT-1"]),
        ('`sys/name`:string = "atoms ✓"', ["AT-1"]),
        ("`train/loss`:floatSeries < 1", ["AT-2"]),  # compares the last value
        ('`sys/custom_run_id`:string = "custom-files-003"', ["AT-3"]),
    ],
)
def test_queries(query: str, expected: list[str]) -> None:
    assert _ids(query) == expected


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("`params/lr`:float >> 1", "expected a value at position 20"),
        ("(`params/lr`:float > 1", "end of query"),
        ("`params/lr`:tensor > 1", "unknown attribute type 'tensor' at position 13"),
        ("`params/lr`:float > abc", "expected a number at position 21"),
        ("`sys/trashed`:bool = maybe", "expected true or false"),
        ('`sys/creation_time`:datetime > "soon"', "expected an ISO-8601 datetime"),
        ("a = 1 AND", "end of query"),
        ("a = 1 b = 2", "unexpected 'b' at position 7"),
        ("`params/lr`:float CONTAINS 1", "CONTAINS applies to string and stringSet"),
        ("= 1", "expected an attribute name at position 1"),
        ("a = 1 )", "unexpected ')' at position 7"),
    ],
)
def test_syntax_errors_say_where(query: str, where: str) -> None:
    with pytest.raises(NqlSyntaxError) as error:
        compile_query(query)
    assert where in str(error.value)
