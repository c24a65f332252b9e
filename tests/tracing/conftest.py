"""Live servers for the tracing tests (single-node and MariaDB + Redis), the span store's caches
(memory and Redis), and span-store helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pushwire.cache.memory import MemoryCache
from pushwire.cache.redis import RedisCache
from pushwire.tracing.records import StoredSpan
from pushwire.tracing.store import SpanStore
from tests.live import LiveServer, backend_env, live_server
from tests.services import REDIS_URL, unique

live_env = backend_env  # the name tests here import


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[MemoryCache | RedisCache]:
    prefix = unique("trt:") + ":"
    c: MemoryCache | RedisCache = MemoryCache(prefix) if request.param == "memory" else RedisCache(REDIS_URL, prefix)
    await c.start()
    yield c
    await c.close()
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """Every push traced (the default ratio samples 1 %): these tests read each push's waterfall."""
    async with live_server(await live_env(request, tmp_path, PUSHWIRE_TRACE_SAMPLE_RATIO="1")) as server:
        yield server


async def wait_for_spans(
    store: SpanStore, trace_id: str, done: Callable[[list[StoredSpan]], bool], timeout: float = 10.0
) -> list[StoredSpan]:
    """Poll the store (spans arrive by batched flushes) until `done(spans)`."""
    spans: list[StoredSpan] = []
    async with asyncio.timeout(timeout):
        while True:
            spans = await store.spans(trace_id)
            if done(spans):
                return spans
            await asyncio.sleep(0.1)


def by_name(spans: list[StoredSpan]) -> dict[str, list[StoredSpan]]:
    out: dict[str, list[StoredSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out
