"""Broker and cache faults under load: nothing accepted is lost, order holds, nothing is shown twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pushwire.sdk import PushwireError
from tests.distributed.cluster import Cluster, Follower, cluster

ROOT = Path(__file__).resolve().parents[2]


def _pid(pattern: str) -> int:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    assert out, f"no process matches {pattern!r}"
    return int(out[0])


def _services() -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh")],
        check=True,
        timeout=120,
        env={**os.environ, "VENV": str(ROOT / ".venv")},
    )


@pytest.fixture
async def three(mysql_url: str, tmp_path: Path) -> Cluster:  # type: ignore[misc]
    async with cluster(mysql_url, str(tmp_path)) as c:
        yield c


async def _flow(three: Cluster, room: str, fault, seconds: float = 12) -> None:  # type: ignore[no-untyped-def]
    followers = [Follower(three, f"{room}-{i}", room, i % 3) for i in range(3)]
    for f in followers:
        await asyncio.wait_for(f.subscribed.wait(), 20)
    accepted: list[int] = []
    refused: list[int] = []
    stop = asyncio.Event()

    async def publish() -> None:
        pushers = [three.pusher(i) for i in range(3)]
        n, start = 0, time.monotonic()
        while not stop.is_set():
            try:
                r = await pushers[n % 3].push(channels=[room], event="e", data=n)  # 202 = stored durably
            except PushwireError as exc:
                # 503 while Redis is away (nonces and rate limits fail closed): nothing was stored; retry.
                assert exc.status == 503, exc
                refused.append(n)
                await asyncio.sleep(0.05)
                continue
            accepted.append(r["deliveries"][0]["offset"])
            n += 1
            await asyncio.sleep(max(0, start + n / 200 - time.monotonic()))
        for p in pushers:
            await p.close()

    pub = asyncio.create_task(publish())
    await asyncio.sleep(1)
    await fault()
    await asyncio.sleep(seconds)
    stop.set()
    await pub
    top = max(accepted)
    assert sorted(accepted) == list(range(1, top + 1))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(f.offset >= top for f in followers):
        await asyncio.sleep(0.2)
    for f in followers:
        await f.stop()
    for f in followers:
        assert f.offset == top, (f.user, f.offset, top)
        assert f.got == sorted(set(f.got)), "in order, none twice"
        assert all(f.recovered)


async def test_kafka_paused_10s(three: Cluster) -> None:
    pid = _pid("tansu.*broker")

    async def pause() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(10)
        finally:
            os.kill(pid, signal.SIGCONT)

    await _flow(three, "room.kpause", pause, seconds=4)


async def test_kafka_killed_and_restarted_memory_lost(three: Cluster) -> None:
    async def restart() -> None:
        pid = _pid("tansu.*broker")
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(2)
        await asyncio.to_thread(_services)  # starts a fresh, empty Tansu

    await _flow(three, "room.krestart", restart, seconds=10)


async def test_redis_restarted_mid_stream(three: Cluster) -> None:
    async def restart() -> None:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
        await asyncio.sleep(1)
        await asyncio.to_thread(_services)

    await _flow(three, "room.rrestart", restart, seconds=6)
