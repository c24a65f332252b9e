"""The process figures in /metrics: resident memory, open fds, asyncio tasks, pool connections."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pushwire.metrics import process
from tests.live import Client, LiveServer, backend_env, live_server
from tests.metrics.exposition import parse, value

TOKEN = "scrape-token-0123456789abcdef"


def _vm_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_resident_memory_is_what_the_kernel_reports() -> None:
    rss = process.resident_bytes()
    assert rss is not None
    assert abs(rss - _vm_rss_bytes()) < 8 * 1024 * 1024  # two reads of a live process, not one instant


def test_open_fds_count_a_file_opened_and_closed(tmp_path: Path) -> None:
    before = process.open_fds()
    assert before is not None and before > 0
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR)
    try:
        assert process.open_fds() == before + 1
    finally:
        os.close(fd)
    assert process.open_fds() == before


def test_tasks_are_unknown_outside_an_event_loop() -> None:
    assert process.asyncio_tasks() is None


async def test_tasks_count_a_pending_task_until_it_ends() -> None:
    before = process.asyncio_tasks()
    assert before is not None and before >= 1  # this test's own task
    gate = asyncio.Event()
    task = asyncio.create_task(gate.wait())
    assert process.asyncio_tasks() == before + 1
    gate.set()
    await task
    assert process.asyncio_tasks() == before


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_METRICS_TOKEN=TOKEN)
    async with live_server(env) as server:
        yield server


async def test_scrape_exposes_the_process_and_its_pools(live: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=live.http) as http:
        series, types = parse((await http.get("/metrics", headers=auth)).text)
        fds = value(series, "process_open_fds")
        tasks = value(series, "pushwire_asyncio_tasks")
        assert fds is not None and tasks is not None
        assert (value(series, "process_resident_memory_bytes") or 0) > 10 * 1024 * 1024
        assert {types[n] for n in ("process_open_fds", "pushwire_asyncio_tasks", "pushwire_database_connections")} == {
            "gauge"
        }
        db = [v for (name, _), v in series.items() if name == "pushwire_database_connections"]
        assert db and sum(db) >= 1  # start-up pinged the database through the pool
        cache = [v for (name, _), v in series.items() if name == "pushwire_cache_connections"]
        if live.runtime.backends.cache.shared:  # Redis: its pool; the memory engine: its keys instead
            assert cache and sum(cache) >= 1 and value(series, "pushwire_cache_keys") is None
        else:
            assert not cache and value(series, "pushwire_cache_keys") is not None
            assert value(series, "pushwire_cache_evicted_keys") == 0

        # A connection is one more socket; the server's fd count sees it (the test runs in-process).
        async with await Client.connect(live.ws_url(live.token("u1"))) as c:
            await c.recv_until("welcome")
            series, _ = parse((await http.get("/metrics", headers=auth)).text)
            assert (value(series, "process_open_fds") or 0) >= fds + 1
