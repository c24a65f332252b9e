"""The hot history of a channel in the cache: the newest N messages, newest first (LPUSH + LTRIM).

Each entry is `<offset>|<message JSON>` so a reader finds offsets without decoding JSON, and
the JSON is sent to clients as is. The cache is only a fast path: readers check that what they
got is complete and fall back to the database when it is not.
"""

from __future__ import annotations

from collections.abc import Sequence

from pushwire.cache.base import Cache, ListPush

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

    async def append_many(self, lists: Sequence[tuple[str, str, Sequence[tuple[int, bytes]], int]]) -> None:
        """`append` for several channels, (app_id, channel, items, max_len) each, in one pipelined call."""
        await self.cache.list_push_capped_many(
            [
                ListPush(hot_key(app_id, channel), [entry(o, j) for o, j in items], max_len, ttl=HOT_HISTORY_TTL)
                for app_id, channel, items, max_len in lists
            ]
        )

    async def page(self, app_id: str, channel: str, after: int, upto: int, top: int) -> list[bytes] | None:
        """Messages with after < offset ≤ upto, oldest first; None unless every one of them is present.

        One page of a replay: `top` (≥ upto) is the newest offset the caller knows of, which places
        the page in the list (newest first) without reading what lies before it. A few extra
        entries absorb relay-retry duplicates; messages pushed since `top` shift the page: one
        second read, placed by the newest entry the first one saw. Anything less complete is
        None, and the caller falls back to the database."""
        want = upto - after
        if want <= 0:
            return []
        start = max(0, top - upto)
        for _ in range(2):
            raw = await self.cache.list_range(hot_key(app_id, channel), start, start + want - 1 + HEAD_SLACK)
            found: dict[int, bytes] = {}
            for item in raw:
                offset, body = split_entry(item)
                if after < offset <= upto:
                    found[offset] = body
            if len(found) == want:
                return [found[o] for o in range(after + 1, upto + 1)]
            if not raw:
                return None
            # The first entry read sits at `start`: the list's head is about start + its offset.
            moved = max(0, start + split_entry(raw[0])[0] - upto)
            if moved == start:
                return None
            start = moved
        return None
