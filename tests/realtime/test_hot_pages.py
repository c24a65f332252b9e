"""Replay pages from the hot history, on the memory cache and on Redis: placed from the newest
offset the reader knows of, found again when newer messages shifted them, None when incomplete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pushwire.cache.base import Cache
from pushwire.messaging.hot_history import HotHistory
from pushwire.wiring import build_cache
from tests.services import REDIS_URL, unique


@pytest.fixture(params=["memory", "redis"])
async def hot(request: pytest.FixtureRequest) -> AsyncIterator[HotHistory]:
    cache: Cache = build_cache("memory://" if request.param == "memory" else REDIS_URL, prefix=unique("pwtest:"))
    await cache.start()
    yield HotHistory(cache)
    await cache.close()


async def _append(hot: HotHistory, first: int, last: int, max_len: int = 1_000) -> None:
    await hot.append("a1", "room.x", [(o, b'{"o":%d}' % o) for o in range(first, last + 1)], max_len)


def _offsets(page: list[bytes] | None) -> list[int]:
    assert page is not None
    return [int(p.split(b":")[1].rstrip(b"}")) for p in page]


async def test_pages_in_order_from_anywhere_in_the_list(hot: HotHistory) -> None:
    await _append(hot, 1, 500)
    assert _offsets(await hot.page("a1", "room.x", 0, 8, 500)) == list(range(1, 9))
    assert _offsets(await hot.page("a1", "room.x", 300, 500, 500)) == list(range(301, 501))
    assert await hot.page("a1", "room.x", 10, 10, 500) == []


async def test_a_page_is_found_after_newer_messages_moved_it(hot: HotHistory) -> None:
    await _append(hot, 1, 500)
    await _append(hot, 501, 700)  # published after the reader took top = 500
    assert _offsets(await hot.page("a1", "room.x", 100, 200, 500)) == list(range(101, 201))
    # and the other way: the reader's top is ahead of what the cache has yet
    assert _offsets(await hot.page("a1", "room.x", 100, 200, 760)) == list(range(101, 201))


async def test_an_incomplete_page_is_none(hot: HotHistory) -> None:
    await _append(hot, 1, 500, max_len=100)  # only 401..500 kept
    assert await hot.page("a1", "room.x", 350, 450, 500) is None
    assert _offsets(await hot.page("a1", "room.x", 400, 450, 500)) == list(range(401, 451))
    assert await hot.page("a1", "room.y", 0, 5, 5) is None  # nothing cached at all
