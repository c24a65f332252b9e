"""`pushwire run --no-relay` and `pushwire relay` as two processes on MariaDB, Redis, Kafka (Tansu)
and etcd: the instance accepts pushes it cannot send, the relay process sends them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.distributed.cluster import cluster, start_relay
from tests.live import Client


async def _instances(admin) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return {i["id"]: i["roles"] for i in (await admin.request("GET", "/api/v1/admin/instances"))["instances"]}


async def test_a_relay_process_sends_what_a_no_relay_instance_commits(mysql_url: str, tmp_path: Path) -> None:
    async with cluster(mysql_url, str(tmp_path), size=1, run_args=["--no-relay"]) as c:
        server = c.instances[0]
        relay_id = f"{server.name}-relay"
        async with await Client.connect(server.ws(c.token("u1"))) as client, c.pusher(0) as pusher, c.admin(0) as admin:
            await client.recv_until("welcome")
            await pusher.push(users=["u1"], event="e", data=1)  # signed; 202 once committed
            with pytest.raises(TimeoutError):
                await client.messages(1, timeout=2)  # no relay anywhere: the row waits in the outbox
            assert await _instances(admin) == {server.name: ["api", "realtime"]}

            relay = start_relay(relay_id, c.env, str(tmp_path))
            try:
                [first] = await client.messages(1, timeout=40)  # topic creation and router discovery
                await pusher.push(users=["u1"], event="e", data=2)
                [second] = await client.messages(1, timeout=10)
                assert [(m["offset"], m["data"]) for m in (first, second)] == [(1, 1), (2, 2)]
                assert await _instances(admin) == {server.name: ["api", "realtime"], relay_id: ["relay"]}
            finally:
                relay.send_signal(signal.SIGTERM)
                try:
                    code = relay.wait(20)
                except subprocess.TimeoutExpired:
                    relay.kill()
                    raise
            assert code == 0
            # A clean leave revokes the relay's lease: its entry goes at once, not after the TTL.
            deadline = time.monotonic() + 2
            while relay_id in await _instances(admin) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert relay_id not in await _instances(admin)
    started = [line for line in (tmp_path / f"{relay_id}.log").read_text().splitlines() if "started" in line]
    assert len(started) == 1 and f"relay {relay_id} started" in started[0] and "every 50 ms" in started[0], started
