"""The hot history of a channel in the cache: the newest N messages, newest first (LPUSH + LTRIM).

Each entry is `<offset>|<message JSON>` so a reader finds offsets without decoding JSON, and
the JSON is sent to clients as is. The cache is only a fast path: readers check that what they
got is complete and fall back to the database when it is not.
"""

from __future__ import annotations

from collections.abc import Sequence

from pushwire.cache.base import Cache

HOT_HISTORY_TTL = 24 * 3600
HEAD_SLACK = 16


def hot_key(app_id: str, channel: str) -> str:
    return f"hist:{app_id}:{channel}"


def entry(offset: int, message_json: bytes) -> bytes:
    return b"%d|" % offset + message_json


def split_entry(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"|")
    return int(head), body


class HotHistory:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def append(self, app_id: str, channel: str, items: Sequence[tuple[int, bytes]], max_len: int) -> None:
        """Items in offset order; the newest ends at the head."""
        await self.cache.list_push_capped(
            hot_key(app_id, channel), [entry(o, j) for o, j in items], max_len, ttl=HOT_HISTORY_TTL
        )

    async def range(self, app_id: str, channel: str, after: int, upto: int) -> list[bytes] | None:
        """Messages with after < offset ≤ upto, oldest first; None unless every one of them is present."""
        want = upto - after
        if want <= 0:
            return []
        # Newest first: the wanted range is at the head when the cache is current. A few extra
        # entries absorb relay-retry duplicates; anything less complete falls back to the database.
        raw = await self.cache.list_range(hot_key(app_id, channel), 0, want - 1 + HEAD_SLACK)
        found: dict[int, bytes] = {}
        for item in raw:
            offset, body = split_entry(item)
            if after < offset <= upto:
                found[offset] = body  # duplicates (a relay retry) collapse here
        if len(found) != want:
            return None
        return [found[o] for o in range(after + 1, upto + 1)]
