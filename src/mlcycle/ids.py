"""Globally unique, time-sortable ids, and the typed names they travel under.

Ids are ULIDs: 48 bits of milliseconds and 80 random bits, written as 26
Crockford base32 characters, so sorting ids as text sorts them by creation
time. Within one process, ids made in the same millisecond still sort in the
order they were made.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NewType

__all__ = [
    "Digest",
    "EventId",
    "ExperimentId",
    "RunId",
    "new_id",
]

RunId = NewType("RunId", str)
ExperimentId = NewType("ExperimentId", str)
EventId = NewType("EventId", str)
Digest = NewType("Digest", str)
"""A content digest written as ``sha256:<64 hex digits>``."""

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last: list[int] = [0, 0]  # last (milliseconds, random) pair handed out


def new_id() -> str:
    """Return a new ULID, greater than every id this process made before.

    >>> a, b = new_id(), new_id()
    >>> len(a), a < b
    (26, True)
    """
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last[0]:
            millis, rand = _last[0], _last[1] + 1
            if rand >= 1 << _RANDOM_BITS:
                millis, rand = millis + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last[0], _last[1] = millis, rand
    value = (millis << _RANDOM_BITS) | rand
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))
