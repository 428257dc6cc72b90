"""The run-filter language neptune-query sends (`params.query.query`), parsed and evaluated on plain values.

neptune-query builds its queries from a small grammar (see `neptune_query.internal.filters`):

    expr      := term (("AND" | "OR") term)*        AND binds tighter than OR
    term      := "NOT" term | "(" expr ")" | predicate
    predicate := attribute ( OPERATOR "value" | "EXISTS" )
    attribute := `name` [":" type] | aggregation "(" `name` [":" type] ")"
    OPERATOR  := == != > >= < <= MATCHES "NOT MATCHES" CONTAINS "NOT CONTAINS"

Values are double-quoted with `\\` and `\"` escapes; datetimes come as ISO 8601 with an offset. Types are the
backend's names (floatSeries, stringSet, ...).

Assumptions about the real service where its behaviour is not documented:
- A predicate on an attribute the run does not have is false, whatever the operator (`!=` and the NOT forms
  too); only an explicit `NOT (...)` turns it true.
- MATCHES is an unanchored regular-expression search (the backend's regexes are "find" semantics).
- On a string set, CONTAINS / MATCHES hold when any element equals / matches; `==` when the set is exactly
  that one element.
- A literal that cannot be read as the attribute's type is a client error (HTTP 400), not a silent false.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
WORD_OPERATORS = ("NOT MATCHES", "NOT CONTAINS", "MATCHES", "CONTAINS")
NUMERIC_TYPES = {"float", "int", "floatSeries"}


class QueryError(ValueError):
    """The query is malformed or cannot apply to the attribute it names (served as HTTP 400)."""


@dataclass(frozen=True)
class AttributeRef:
    """An attribute as a query or a sort names it: the type and aggregation are optional."""

    name: str
    type: str | None = None
    aggregation: str | None = None


@dataclass(frozen=True)
class TypedValue:
    """One attribute's value on one run, already aggregated: numbers, str, bool, datetime as epoch ms,
    frozenset for string sets."""

    type: str
    value: Any


# The evaluator asks the caller for the value of an attribute on the run at hand; None when absent.
Lookup = Callable[[AttributeRef], "TypedValue | None"]


class Node:
    def evaluate(self, lookup: Lookup) -> bool:
        raise NotImplementedError

    def attributes(self) -> list[AttributeRef]:
        raise NotImplementedError


@dataclass(frozen=True)
class Predicate(Node):
    attribute: AttributeRef
    operator: str  # one of COMPARISONS, WORD_OPERATORS, or "EXISTS"
    literal: str | None = None

    def attributes(self) -> list[AttributeRef]:
        return [self.attribute]

    def evaluate(self, lookup: Lookup) -> bool:
        found = lookup(self.attribute)
        if found is None:
            return False
        if self.operator == "EXISTS":
            return True
        assert self.literal is not None
        return _apply(self.operator, found, self.literal)


@dataclass(frozen=True)
class Not(Node):
    child: Node

    def attributes(self) -> list[AttributeRef]:
        return self.child.attributes()

    def evaluate(self, lookup: Lookup) -> bool:
        return not self.child.evaluate(lookup)


@dataclass(frozen=True)
class BoolOp(Node):
    operator: str  # AND | OR
    children: tuple[Node, ...]

    def attributes(self) -> list[AttributeRef]:
        return [ref for child in self.children for ref in child.attributes()]

    def evaluate(self, lookup: Lookup) -> bool:
        if self.operator == "AND":
            return all(child.evaluate(lookup) for child in self.children)
        return any(child.evaluate(lookup) for child in self.children)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>`[^`]*`)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|>=|<=|>|<|\(|\)|:)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise QueryError(f"unexpected character in query at offset {pos}: {text[pos:pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("query ends too early")
        self.pos += 1
        return token

    def expect(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.take()
        if got_kind != kind or (value is not None and got.upper() != value):
            raise QueryError(f"expected {value or kind} in query, got {got!r}")
        return got

    def is_word(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[0] == "word" and token[1].upper() == word

    def parse(self) -> Node:
        node = self.parse_or()
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()[1]!r} in query")  # type: ignore[index]
        return node

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.is_word("OR"):
            self.take()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else BoolOp("OR", tuple(children))

    def parse_and(self) -> Node:
        children = [self.parse_term()]
        while self.is_word("AND"):
            self.take()
            children.append(self.parse_term())
        return children[0] if len(children) == 1 else BoolOp("AND", tuple(children))

    def parse_term(self) -> Node:
        token = self.peek()
        if token is None:
            raise QueryError("query ends too early")
        if self.is_word("NOT"):
            self.take()
            return Not(self.parse_term())
        if token == ("op", "("):
            self.take()
            node = self.parse_or()
            self.expect("op", ")")
            return node
        return self.parse_predicate()

    def parse_attribute(self) -> AttributeRef:
        aggregation = None
        token = self.peek()
        if token is not None and token[0] == "word" and self.peek(1) == ("op", "("):
            aggregation = self.take()[1]
            self.take()
        name = self.expect("name")[1:-1]
        type_ = None
        if self.peek() == ("op", ":"):
            self.take()
            type_ = self.expect("word")
        if aggregation is not None:
            self.expect("op", ")")
        return AttributeRef(name, type_, aggregation)

    def parse_predicate(self) -> Node:
        attribute = self.parse_attribute()
        kind, value = self.take()
        if kind == "word" and value.upper() == "EXISTS":
            return Predicate(attribute, "EXISTS")
        if kind == "word" and value.upper() == "NOT":
            operator = "NOT " + self.expect("word").upper()
        elif kind == "word":
            operator = value.upper()
        elif kind == "op" and value in COMPARISONS:
            operator = value
        else:
            raise QueryError(f"expected an operator in query, got {value!r}")
        if operator not in COMPARISONS and operator not in WORD_OPERATORS:
            raise QueryError(f"unknown operator in query: {operator}")
        literal = self.expect("string")
        return Predicate(attribute, operator, _unquote(literal))


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1], flags=re.DOTALL)


def parse_query(text: str) -> Node | None:
    """The parsed filter, or None for an empty query (every run matches)."""
    if not text or not text.strip():
        return None
    return _Parser(text).parse()


def datetime_literal_to_ms(literal: str) -> int:
    try:
        parsed = dt.datetime.fromisoformat(literal.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"not a datetime: {literal!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)  # assumption: a naive datetime means UTC
    return int(round(parsed.timestamp() * 1000))


def _coerce(literal: str, found: TypedValue) -> Any:
    if found.type in NUMERIC_TYPES:
        try:
            return float(literal)
        except ValueError as exc:
            raise QueryError(f"not a number: {literal!r}") from exc
    if found.type == "bool":
        lowered = literal.lower()
        if lowered not in ("true", "false"):
            raise QueryError(f"not a boolean: {literal!r}")
        return lowered == "true"
    if found.type == "datetime":
        return datetime_literal_to_ms(literal)
    return literal


def compile_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled; a bad one is the client's error (QueryError), not the server's."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"bad regular expression {pattern!r}: {exc}") from exc


def _apply(operator: str, found: TypedValue, literal: str) -> bool:
    value = found.value
    if value is None:
        return False
    if operator in ("MATCHES", "NOT MATCHES"):
        regex = compile_regex(literal)
        texts = value if isinstance(value, frozenset) else [value]
        if not all(isinstance(text, str) for text in texts):
            raise QueryError(f"MATCHES needs a string attribute, {found.type} given")
        hit = any(regex.search(text) for text in texts)
        return hit if operator == "MATCHES" else not hit
    if operator in ("CONTAINS", "NOT CONTAINS"):
        if isinstance(value, frozenset):
            hit = literal in value
        elif isinstance(value, str):
            hit = literal in value
        else:
            raise QueryError(f"CONTAINS needs a string or string set attribute, {found.type} given")
        return hit if operator == "CONTAINS" else not hit
    if isinstance(value, frozenset):
        if operator == "==":
            return value == frozenset([literal])
        if operator == "!=":
            return value != frozenset([literal])
        raise QueryError(f"{operator} does not apply to a string set")
    right = _coerce(literal, found)
    left = float(value) if found.type in NUMERIC_TYPES else value
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    try:
        if operator == ">":
            return bool(left > right)
        if operator == ">=":
            return bool(left >= right)
        if operator == "<":
            return bool(left < right)
        return bool(left <= right)
    except TypeError as exc:
        raise QueryError(f"{operator} does not apply to {found.type}") from exc
