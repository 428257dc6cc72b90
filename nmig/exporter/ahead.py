"""Work asked for ahead of its turn: the one helper behind the export's read-ahead.

An export is chains of round trips: an entity's attributes, then its series' first pages and its files, then
the rest of each series. Over latency, or under 429s that each wait out a Retry-After, every link that is
asked for only when its turn comes is a wait of its own. `Ahead` asks for the next few items of an ordered
list while the current ones are worked on, so those waits overlap instead of adding up. Three lists use it
(nmig.exporter.entity, nmig.exporter.export): the first pages of an entity's next value series, the files
of an entity, and the attributes of the next entities.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Ahead(Generic[K, V]):
    """Keeps up to `window` items of `keys` asked for (`submit(key)`) and not yet taken, in the keys' order.

    `take(key)` hands over the item's future when it was asked for (None: the caller does the work itself) and
    asks for the next ones. With `in_order`, the keys are taken one after another by one consumer: taking one
    gives up those before it that were never taken (an attribute skipped), so they do not hold the window.
    Without it, several consumers take keys in any order and each key is taken once. Thread-safe."""

    def __init__(
        self,
        submit: Callable[[K], Future[V]],
        keys: Sequence[K],
        window: int,
        *,
        in_order: bool = False,
        discard: Callable[[Future[V]], None] | None = None,
    ) -> None:
        self._submit = submit
        self._keys = list(keys)
        self._position = {key: index for index, key in enumerate(self._keys)}
        self._window = max(0, window)
        self._in_order = in_order
        self._discard = discard
        self._futures: dict[K, Future[V]] = {}
        self._next = 0  # the next key to ask for
        self._lock = threading.Lock()
        self._closed = False
        with self._lock:
            self._top_up()

    def _top_up(self) -> None:
        while not self._closed and self._next < len(self._keys) and len(self._futures) < self._window:
            key = self._keys[self._next]
            self._next += 1
            self._futures[key] = self._submit(key)

    def take(self, key: K) -> Future[V] | None:
        with self._lock:
            index = self._position.get(key)
            if index is None:
                return None
            future = self._futures.pop(key, None)
            if self._in_order:
                for earlier in [k for k in self._futures if self._position[k] < index]:
                    self._drop(self._futures.pop(earlier))
                self._next = max(self._next, index + 1)  # never asked for now: the caller does it itself
            self._top_up()
            return future

    def cancel(self) -> None:
        """Ask for nothing more and drop what was asked for but not taken (work that stopped early)."""
        with self._lock:
            self._closed = True
            for future in self._futures.values():
                self._drop(future)
            self._futures.clear()

    def _drop(self, future: Future[V]) -> None:
        if not future.cancel() and self._discard is not None:
            future.add_done_callback(self._discard)  # when it ends; nobody waits for it
