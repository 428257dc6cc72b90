"""One worker budget shared by the projects of a workspace: how many projects run at once, with how many
workers each, and running them.

`--max-workers W` over P projects: min(P, W) projects at a time, each with W // min(P, W) workers (at least
one), so at most W runs or entities are in flight in total. A project that finishes frees its slot for the
next project, which gets the same share; the share is not re-split among the projects still running (simple,
and the totals never exceed W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def share_workers(max_workers: int, projects: int) -> tuple[int, int]:
    """(projects at once, workers per project) for a budget of `max_workers`."""
    at_once = max(1, min(projects, max_workers))
    return at_once, max(1, max_workers // at_once)


def run_projects(items: Sequence[T], at_once: int, job: Callable[[T], R]) -> list[R]:
    """`job(item)` for every item, `at_once` at a time, results in the order of `items`. A job reports its own
    failures in its result; an exception (a bug, Ctrl-C) stops the rest from starting and is raised."""
    if at_once <= 1 or len(items) <= 1:
        return [job(item) for item in items]
    pool = ThreadPoolExecutor(at_once, thread_name_prefix="nmig-project")
    try:
        futures = [pool.submit(job, item) for item in items]
        results = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
