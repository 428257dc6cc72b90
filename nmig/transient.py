"""How nmig asks a transient answer of either Neptune service again: the numbers both halves use.

A 5xx or a 429 of a read, or of a 3.x ingest request (which the client sends again unchanged when it fails,
neptune_scale/sync/sync_process.py:287), is asked again at once, on the same connection, before the client's
own retry loop sees it: a random fault needs no wait, and the clients' own loops start at 0.5-1 s and grow
with every failure of the request (429s included), while the work is a chain of requests one after another.
Then after 0.2, 0.4 and 0.8 s (plus jitter, so many threads do not come back together); a Retry-After is
waited out as given (on the 3.x side up to RETRY_AFTER_LIMIT s; a longer one is left to the client). Only an answer that stays bad through all of that reaches
the client's loop, whose back-off and time budget are then what a lasting outage gets. At 20% 5xx + 20% 429
a request still failing after the five attempts is 1 in 100. Measured in benchmarks/bench_faults.py.
"""

from __future__ import annotations

import email.utils
import random
import time

QUICK_RETRIES = 4  # after the first attempt
QUICK_BACKOFF = 0.1  # seconds; none before the first retry, then 0.2, 0.4, 0.8 (urllib3's formula)
QUICK_BACKOFF_JITTER = 0.1  # seconds, at most, added to each
RETRY_AFTER_LIMIT = 10.0  # a longer Retry-After goes to the client's own loop (which honours it, or not)
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def backoff_seconds(retry: int) -> float:
    """The wait before quick retry number `retry` (1-based) of a request, as urllib3's Retry computes it."""
    if retry <= 1:
        return 0.0
    return QUICK_BACKOFF * 2 ** (retry - 1) + random.random() * QUICK_BACKOFF_JITTER


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's wait (seconds or an HTTP date, RFC 9110 10.2.3); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        return None
    return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)
