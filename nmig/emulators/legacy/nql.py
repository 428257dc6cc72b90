"""The subset of Neptune Query Language (NQL) that the 2.x leaderboard search accepts, parsed and evaluated.

Grammar (keywords case-insensitive):
    query     := [or_expr]
    or_expr   := and_expr ("OR" and_expr)*
    and_expr  := not_expr ("AND" not_expr)*
    not_expr  := "NOT" not_expr | "(" or_expr ")" | condition
    condition := name [":" type] operator value
    name      := `backtick quoted` | bare name of letters, digits, _ - . /
    operator  := = | == | != | > | >= | < | <= | CONTAINS
    value     := "double quoted" | 'single quoted' | bare word or number

Assumptions about the real service, which we cannot observe: a condition on an attribute the object lacks, or
holds with another type, is false (also for `!=`); `int`/`integer` and `float` compare numerically with each
other; `string CONTAINS` is a substring test, `stringSet CONTAINS` a membership test; datetimes compare as
instants and accept ISO-8601 with or without fraction and `Z`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nmig.emulators.legacy.fixture import Attribute, Container, FloatSeries, StringSeries


class NqlSyntaxError(ValueError):
    """The query cannot be parsed; the message says at which character and why."""


Predicate = Callable[[Container], bool]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\() | (?P<rparen>\)) | (?P<colon>:)
    | (?P<op>==|!=|>=|<=|=|>|<)
    | (?P<backtick>`(?:[^`\\]|\\.)*`)
    | (?P<dquote>"(?:[^"\\]|\\.)*")
    | (?P<squote>'(?:[^'\\]|\\.)*')
    | (?P<word>[^\s()`"':=!<>]+)
    )""",
    re.VERBOSE,
)
_TYPES = {
    "string": "string",
    "stringset": "stringSet",
    "experimentstate": "experimentState",
    "bool": "bool",
    "boolean": "bool",
    "datetime": "datetime",
    "int": "int",
    "integer": "int",
    "float": "float",
    "floatseries": "floatSeries",
    "stringseries": "stringSeries",
}


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN.match(query, pos)
        if match is None or match.lastgroup is None:
            start = len(query[:pos]) + (len(query[pos:]) - len(query[pos:].lstrip()))
            raise NqlSyntaxError(f"unexpected character {query[start]!r} at position {start + 1}")
        kind = match.lastgroup
        text = match.group(kind)
        tokens.append(_Token(kind, text, match.start(kind) + 1))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise NqlSyntaxError(f"unexpected end of query at position {len(self.query) + 1}")
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda container: True
        predicate = self.or_expr()
        token = self.peek()
        if token is not None:
            raise NqlSyntaxError(f"unexpected {token.text!r} at position {token.pos}")
        return predicate

    def or_expr(self) -> Predicate:
        items = [self.and_expr()]
        while self.keyword("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else (lambda c: any(p(c) for p in items))

    def and_expr(self) -> Predicate:
        items = [self.not_expr()]
        while self.keyword("AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else (lambda c: all(p(c) for p in items))

    def not_expr(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.not_expr()
            return lambda c: not inner(c)
        token = self.peek()
        if token is not None and token.kind == "lparen":
            self.take()
            inner = self.or_expr()
            closing = self.take()
            if closing.kind != "rparen":
                raise NqlSyntaxError(f"expected ')' at position {closing.pos}, got {closing.text!r}")
            return inner
        return self.condition()

    def condition(self) -> Predicate:
        token = self.take()
        if token.kind == "backtick":
            name = _unquote(token.text)
        elif token.kind == "word" and token.text.upper() not in ("AND", "OR", "NOT", "CONTAINS"):
            name = token.text
        else:
            raise NqlSyntaxError(f"expected an attribute name at position {token.pos}, got {token.text!r}")
        declared: str | None = None
        if self.peek() is not None and self.peek().kind == "colon":  # type: ignore[union-attr]
            self.take()
            type_token = self.take()
            declared = _TYPES.get(type_token.text.lower()) if type_token.kind == "word" else None
            if declared is None:
                raise NqlSyntaxError(
                    f"unknown attribute type {type_token.text!r} at position {type_token.pos}"
                )
        op_token = self.take()
        if op_token.kind == "op":
            operator = "=" if op_token.text == "==" else op_token.text
        elif op_token.kind == "word" and op_token.text.upper() == "CONTAINS":
            operator = "CONTAINS"
        else:
            raise NqlSyntaxError(f"expected an operator at position {op_token.pos}, got {op_token.text!r}")
        value_token = self.take()
        if value_token.kind in ("dquote", "squote"):
            value = _unquote(value_token.text)
        elif value_token.kind == "word":
            value = value_token.text
        else:
            raise NqlSyntaxError(f"expected a value at position {value_token.pos}, got {value_token.text!r}")
        if operator == "CONTAINS" and declared not in (None, "string", "stringSet"):
            raise NqlSyntaxError(
                f"CONTAINS applies to string and stringSet, not {declared} (position {op_token.pos})"
            )
        return _make_condition(name, declared, operator, value, value_token.pos)


def compile_query(query: str) -> Predicate:
    """A predicate over containers for `query`; raises NqlSyntaxError with the position at fault."""
    return _Parser(query).parse()


def parse_datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _to_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _make_condition(name: str, declared: str | None, operator: str, raw: str, pos: int) -> Predicate:
    number = _to_number(raw)
    moment = parse_datetime(raw)
    boolean = {"true": True, "false": False}.get(raw.lower())
    if declared in ("int", "float", "floatSeries") and number is None:
        raise NqlSyntaxError(f"expected a number at position {pos}, got {raw!r}")
    if declared == "bool" and boolean is None:
        raise NqlSyntaxError(f"expected true or false at position {pos}, got {raw!r}")
    if declared == "datetime" and moment is None:
        raise NqlSyntaxError(f"expected an ISO-8601 datetime at position {pos}, got {raw!r}")

    def test(container: Container) -> bool:
        attr = container.attributes.get(name)
        if attr is None or not _type_matches(attr, declared):
            return False
        return _evaluate(attr, operator, raw, number, moment, boolean)

    return test


def _type_matches(attr: Attribute, declared: str | None) -> bool:
    if declared is None or declared == attr.type:
        return True
    return {declared, attr.type} <= {"int", "float"}


def _evaluate(
    attr: Attribute,
    operator: str,
    raw: str,
    number: float | None,
    moment: datetime | None,
    boolean: bool | None,
) -> bool:
    kind, value = attr.type, attr.value
    if operator == "CONTAINS":
        if kind == "stringSet":
            return raw in value
        if kind == "string":
            return raw in value
        return False
    compare = _COMPARE[operator]
    if kind in ("int", "float"):
        return (
            number is not None
            and not (isinstance(value, float) and math.isnan(value))
            and compare(value, number)
        )
    if kind == "floatSeries":
        series: FloatSeries = value
        return number is not None and len(series.values) > 0 and compare(float(series.values[-1]), number)
    if kind == "bool":
        return boolean is not None and compare(value, boolean)
    if kind == "datetime":
        return moment is not None and compare(value, moment)
    if kind == "experimentState":
        # Users write the states as the client names them (active/inactive) or as the API does (running/idle).
        state = {"active": "running", "inactive": "idle"}.get(raw.lower(), raw)
        return compare(value, state)
    if kind == "string":
        return compare(value, raw)
    if kind == "stringSeries":
        strings: StringSeries = value
        return len(strings.values) > 0 and compare(strings.values[-1], raw)
    return False
