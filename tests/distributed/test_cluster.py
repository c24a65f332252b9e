"""Three instances on real MariaDB, Redis, Kafka (Tansu) and etcd: routing, crash, failover, live config."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from tests.distributed.cluster import Cluster, Follower, cluster


@pytest.fixture
async def three(mysql_url: str, tmp_path: Path) -> Cluster:  # type: ignore[misc]
    async with cluster(mysql_url, str(tmp_path)) as c:
        yield c


async def _wait(cond, timeout: float, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return True
        await asyncio.sleep(step)
    return False


async def test_pushes_through_any_instance_reach_exactly_their_targets(three: Cluster) -> None:
    users = [f"u{i}" for i in range(6)]
    sockets = {}
    for i, user in enumerate(users):  # two users per instance
        ws = await websockets.connect(three.instances[i % 3].ws(three.token(user)))
        assert json.loads(await ws.recv())["type"] == "welcome"
        sockets[user] = ws
    pushers = [three.pusher(i) for i in range(3)]
    expected: dict[str, list[int]] = {u: [] for u in users}
    for n in range(60):
        target = users[n % len(users)]
        await pushers[n % 3].push(users=[target], event="e", data=n)
        expected[target].append(n)
    for user, ws in sockets.items():
        got = []
        async with asyncio.timeout(40):
            while len(got) < len(expected[user]):
                f = json.loads(await ws.recv())
                if f["type"] == "message":
                    assert f["channel"] == f"user.{user}"
                    got.append((f["offset"], f["data"]))
        assert [d for _, d in got] == expected[user]
        assert [o for o, _ in got] == list(range(1, len(expected[user]) + 1))
        await ws.close()
    for p in pushers:
        await p.close()
    instances = (await three.admin(1).request("GET", "/api/v1/admin/instances"))["instances"]
    assert sorted(i["id"] for i in instances) == sorted(i.name for i in three.instances)


async def test_kill9_during_flow_clients_resume_elsewhere_with_everything(three: Cluster) -> None:
    """Instance 0 holds the outbox shards and a third of the clients; it dies mid-stream."""
    followers = [Follower(three, f"f{i}", "room.flow", i % 3) for i in range(6)]
    for f in followers:
        await asyncio.wait_for(f.subscribed.wait(), 20)
    accepted: list[int] = []
    stop = asyncio.Event()

    async def publish() -> None:
        pushers = [three.pusher(1), three.pusher(2)]  # the survivors keep accepting
        interval, n, start = 1 / 200, 0, time.monotonic()
        while not stop.is_set():
            r = await pushers[n % 2].push(channels=["room.flow"], event="e", data=n)
            accepted.append(r["deliveries"][0]["offset"])
            n += 1
            await asyncio.sleep(max(0, start + n * interval - time.monotonic()))
        for p in pushers:
            await p.close()

    pub = asyncio.create_task(publish())
    await asyncio.sleep(2)
    three.kill9(0)
    await asyncio.sleep(8)  # lease expiry (3 s) + shard takeover + reconnects, under load
    stop.set()
    await pub
    top = max(accepted)
    assert sorted(accepted) == list(range(1, top + 1))
    ok = await _wait(lambda: all(f.offset >= top for f in followers), 40)
    for f in followers:
        await f.stop()
    assert ok, [(f.user, f.offset, top) for f in followers]
    for f in followers:
        assert f.got == sorted(set(f.got)), "in order, no duplicates"
        assert f.got[-1] == top and len(f.got) == len(set(f.got))
        assert all(f.recovered), f"{f.user} resumed with recovered={f.recovered}"
    moved = followers[::3]  # the ones that started on instance 0
    assert all(f.recovered for f in moved) and all(f.recovered for f in moved)


async def test_crashed_instance_leaves_registry_and_presence(three: Cluster) -> None:
    ws = await websockets.connect(three.instances[2].ws(three.token("crash")))
    await ws.recv()
    pw = three.pusher(0)
    assert (await pw.presence("crash"))["online"] is True
    three.kill9(2)
    admin = three.admin(0)

    async def gone() -> bool:
        ids = [i["id"] for i in (await admin.request("GET", "/api/v1/admin/instances"))["instances"]]
        return three.instances[2].name not in ids and not (await pw.presence("crash"))["online"]

    assert await _wait(gone, 10, 0.25)
    await pw.close()
    await admin.close()


async def test_config_change_reaches_every_instance_within_2s(three: Cluster) -> None:
    admins = [three.admin(i) for i in range(3)]
    proc = subprocess.run(
        [sys.executable, "-m", "pushwire", "config", "set", "heartbeat", "17"],
        env=three.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    t0 = time.monotonic()

    async def applied() -> bool:
        seen = [(await a.request("GET", "/api/v1/admin/config"))["config"]["heartbeat"] for a in admins]
        return seen == [17, 17, 17]

    assert await _wait(applied, 5, 0.05)
    assert time.monotonic() - t0 < 2.5
    ws = await websockets.connect(three.instances[1].ws(three.token("cfg")))
    assert json.loads(await ws.recv())["heartbeat"] == 17
    await ws.close()
    # the maintenance switch: pushes refused with 503, nothing stored
    subprocess.run(
        [sys.executable, "-m", "pushwire", "config", "set", "push_enabled", "false"],
        env=three.env,
        check=True,
        timeout=30,
    )
    pw = three.pusher(2)

    async def paused() -> bool:
        try:
            await pw.push(channels=["c"], event="e", data=1)
            return False
        except Exception as exc:
            return getattr(exc, "status", None) == 503

    assert await _wait(paused, 5, 0.1)
    for a in admins:
        await a.close()
    await pw.close()


async def test_operator_api_needs_an_operator_key(three: Cluster) -> None:
    from pushwire.sdk import PushwireError

    pw = three.pusher(0)
    with pytest.raises(PushwireError) as err:
        await pw.request("GET", "/api/v1/admin/instances")
    assert (err.value.status, err.value.code) == (403, "scope_missing")
    await pw.close()


async def test_a_revoked_server_key_is_refused_by_every_instance_on_the_next_request(three: Cluster) -> None:
    """Each instance holds the key in process after its first request; the revocation (made by
    another process, as the CLI or a console on another machine would) restamps the app in Redis,
    so the very next request on every instance is refused, with no wait for the etcd notice."""
    from pushwire.cli.common import Announcer
    from pushwire.sdk import AsyncServerClient
    from pushwire.sdk.server import PushwireError
    from pushwire.storage.database import Database
    from pushwire.tenants.crypto import SecretBox
    from pushwire.tenants.service import TenancyService
    from tests.distributed.cluster import SECRET

    env = three.env
    db = Database(env["PUSHWIRE_DATABASE_URL"])
    announce = Announcer(env["PUSHWIRE_CACHE_URL"], env["PUSHWIRE_REGISTRY_URL"])
    svc = TenancyService(db, SecretBox(SECRET), on_change=announce)
    try:
        key = await svc.create_server_key(three.created.app_id, None)
        clients = [AsyncServerClient(inst.http, key.key_id, key.secret) for inst in three.instances]
        for client in clients:
            await client.push(users=["rk"], event="e", data=1)  # cached on this instance now
        await svc.revoke_server_key(key.key_id, None)
        for client in clients:
            with pytest.raises(PushwireError) as refused:
                await client.push(users=["rk"], event="e", data=2)
            assert (refused.value.status, refused.value.code) == (401, "unknown_key")
            await client.close()
        async with three.pusher(0) as other:  # the app's other key still works
            await other.push(users=["rk"], event="e", data=3)
    finally:
        await announce.close()
        await db.close()
