"""Live servers for the tracing tests (single-node and MariaDB + Redis), and span-store helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pushwire.tracing.records import StoredSpan
from pushwire.tracing.store import SpanStore
from tests.live import LiveServer, backend_env, live_server

live_env = backend_env  # the name tests here import


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(await live_env(request, tmp_path)) as server:
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
