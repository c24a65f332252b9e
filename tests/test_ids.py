"""Message ids: ULID layout (time then randomness, Crockford base32), unique, sortable by time."""

from __future__ import annotations

import re
import time

from pushwire import ids

ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + CROCKFORD.index(ch)
    return value


def test_ids_are_ulids_with_the_current_time() -> None:
    before = int(time.time() * 1000)
    batch = ids.message_ids(500)
    after = int(time.time() * 1000)
    assert len(set(batch)) == 500
    for one in batch:
        assert ULID.fullmatch(one), one
        assert before <= decode(one) >> 80 <= after
    # The 80 random bits differ between ids of one call (one urandom read serves them all).
    assert len({decode(one) & ((1 << 80) - 1) for one in batch}) == 500


def test_ids_sort_by_creation_time() -> None:
    first = ids.message_id()
    time.sleep(0.002)
    assert ids.message_id() > first
