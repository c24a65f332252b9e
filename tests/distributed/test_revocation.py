"""Revocation across instances on MariaDB, Redis and etcd: a change made on one instance (or with
the CLI, another process) closes the affected WebSockets on another instance with 4001 in seconds.

Instance A runs in the test's process (its console and services are at hand); instance B is a
real `pushwire run` process, so the notice can only reach it through etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from pushwire.realtime.protocol import Close
from tests.distributed.cluster import Instance, start_instance, wait_ready
from tests.live import Client, LiveServer, live_server
from tests.services import ETCD_URL, REDIS_URL, unique

CLOSE_WITHIN = 5.0


@contextlib.asynccontextmanager
async def a_and_b(mysql_url: str, log_dir: Path) -> AsyncIterator[tuple[LiveServer, Instance, dict[str, str]]]:
    run = unique("rev")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env.update(
        PUSHWIRE_DATABASE_URL=mysql_url,
        PUSHWIRE_CACHE_URL=REDIS_URL,
        PUSHWIRE_REGISTRY_URL=f"{ETCD_URL}/{run}",
        PUSHWIRE_SECRET_KEY="test-secret-key-0123456789",
        PUSHWIRE_INSTANCE_TTL="3",
    )
    b = start_instance(f"{run}-b", env, str(log_dir))
    try:
        await wait_ready(b)
        async with live_server({**env, "PUSHWIRE_INSTANCE_ID": f"{run}-a"}) as a:
            yield a, b, env
    finally:
        b.proc.send_signal(signal.SIGTERM)
        try:
            b.proc.wait(15)
        except subprocess.TimeoutExpired:
            b.proc.kill()


async def closed_with(client: Client) -> tuple[int | None, float]:
    t0 = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(CLOSE_WITHIN + 5):
            while True:
                await client.ws.recv()
    return client.ws.close_code, time.monotonic() - t0


async def test_revoked_on_one_instance_closes_on_the_other(mysql_url: str, tmp_path: Path) -> None:
    async with a_and_b(mysql_url, tmp_path) as (a, b, _):
        on_b = await Client.connect(b.ws(a.token("u1")))
        await on_b.recv_until("welcome")
        await a.runtime.tenancy.revoke_client_key(a.created.client_key.kid, a.app_id, a.tenant_id)
        code, took = await closed_with(on_b)
        assert code == Close.UNAUTHORIZED and took < CLOSE_WITHIN, (code, took)
        # B's key cache was invalidated as well: the revoked key is refused there at once.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await Client.connect(b.ws(a.token("u1")))
        assert refused.value.response.status_code == 401


async def test_cli_change_closes_connections_on_running_instances(mysql_url: str, tmp_path: Path) -> None:
    async with a_and_b(mysql_url, tmp_path) as (a, b, env):
        on_a = await Client.connect(a.ws_url(a.token("u1")))
        on_b = await Client.connect(b.ws(a.token("u2")))
        for client in (on_a, on_b):
            await client.recv_until("welcome")
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pushwire", "app", "disable", a.app_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr
        t0 = time.monotonic()
        for client in (on_a, on_b):
            code, _ = await closed_with(client)
            assert code == Close.UNAUTHORIZED
        assert time.monotonic() - t0 < CLOSE_WITHIN
