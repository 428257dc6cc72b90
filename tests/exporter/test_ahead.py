"""nmig.exporter.ahead.Ahead: what is asked for ahead, when, and what is given up (plain futures, no client)."""

from __future__ import annotations

from concurrent.futures import Future

from nmig.exporter.ahead import Ahead


class _Asked:
    """A submit that records what was asked for, as unfinished futures the test completes."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.futures: dict[str, Future[str]] = {}

    def __call__(self, key: str) -> Future[str]:
        self.keys.append(key)
        future: Future[str] = Future()
        self.futures[key] = future
        return future


def test_keeps_a_window_of_the_next_keys_asked_for() -> None:
    asked = _Asked()
    ahead = Ahead(asked, ["a", "b", "c", "d", "e"], 2)
    assert asked.keys == ["a", "b"]
    assert ahead.take("a") is asked.futures["a"]
    assert asked.keys == ["a", "b", "c"]
    assert ahead.take("c") is asked.futures["c"]  # any order: several consumers
    assert asked.keys == ["a", "b", "c", "d"]
    assert ahead.take("b") is asked.futures["b"]
    assert ahead.take("e") is asked.futures["e"]
    assert ahead.take("d") is asked.futures["d"]
    assert ahead.take("d") is None  # taken once
    assert ahead.take("zz") is None  # not one of its keys
    assert asked.keys == ["a", "b", "c", "d", "e"]  # each asked for once


def test_in_order_gives_up_keys_passed_over_and_asks_for_none_behind() -> None:
    asked = _Asked()
    given_up: list[str] = []
    ahead = Ahead(asked, ["a", "b", "c", "d", "e", "f"], 2, in_order=True, discard=lambda f: given_up.append(f.result()))
    asked.futures["a"].set_running_or_notify_cancel()  # already running: cannot be cancelled, so discarded when done
    assert ahead.take("b") is asked.futures["b"]  # "a" was skipped (an attribute in error): not holding the window
    assert asked.futures["a"].cancelled() is False
    asked.futures["a"].set_result("a")
    assert given_up == ["a"]
    assert asked.keys == ["a", "b", "c", "d"]
    assert ahead.take("e") is None  # "e" not asked for yet: the caller does it itself...
    assert asked.futures["c"].cancelled() and asked.futures["d"].cancelled()  # ...and "c", "d" are given up
    assert asked.keys == ["a", "b", "c", "d", "f"]  # and never asks for "e" behind the caller's back


def test_a_window_of_zero_asks_for_nothing() -> None:
    asked = _Asked()
    ahead = Ahead(asked, ["a", "b"], 0, in_order=True)
    assert ahead.take("a") is None and ahead.take("b") is None
    assert asked.keys == []


def test_cancel_gives_up_what_was_not_taken_and_asks_for_nothing_more() -> None:
    asked = _Asked()
    ahead = Ahead(asked, ["a", "b", "c"], 2)
    ahead.cancel()
    assert asked.futures["a"].cancelled() and asked.futures["b"].cancelled()
    assert ahead.take("a") is None and ahead.take("c") is None
    assert asked.keys == ["a", "b"]
