"""Live config that reaches an instance without the CLI's check (written straight to the registry)
is logged and ignored: the previous value stays, sessions stay open, the liveness loop keeps running."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pushwire.registry.base import Registry
from pushwire.registry.config import PREFIX, ConfigInvalid, LiveConfig, validate
from pushwire.registry.local import LocalRegistry
from pushwire.wiring import build_registry
from tests.live import Client, LiveServer, backend_env, live_server
from tests.services import ETCD_URL, unique

BAD = [
    ("heartbeat", b"0"),
    ("heartbeat", b"-1"),
    ("heartbeat", b"601"),
    ("heartbeat", b'"abc"'),
    ("heartbeat", b"2.5"),
    ("heartbeat", b"true"),
    ("heartbeat", b"null"),
    ("heartbeat", b"{not json"),
    ("push_enabled", b'"false"'),
    ("push_enabled", b"0"),
]


@pytest.fixture(params=["local", "etcd"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    if request.param == "local":
        r: Registry = LocalRegistry(prefix=f"/{unique('cfg')}/")
    else:
        r = build_registry(f"{ETCD_URL}/{unique('cfg')}")
    await r.start()
    yield r
    await r.close()


async def _settled(config: LiveConfig, changes: int) -> None:
    async with asyncio.timeout(5):
        while config.changes < changes:
            await asyncio.sleep(0.02)


async def test_invalid_values_keep_the_previous_one(registry: Registry) -> None:
    await registry.put(PREFIX + "heartbeat", b'"abc"')  # already there when the instance starts
    config = LiveConfig(registry, {"heartbeat": 25, "push_enabled": True})
    seen: list[tuple[str, Any]] = []
    config.on_change(lambda k, v: seen.append((k, v)))
    await config.start()
    try:
        assert config.get("heartbeat") == 25 and seen == []
        await registry.put(PREFIX + "heartbeat", b"12")
        await _settled(config, 1)
        for key, raw in BAD:
            await registry.put(PREFIX + key, raw)
        await registry.put(PREFIX + "push_enabled", b"false")  # a valid write after the bad ones
        await _settled(config, 2)
        assert config.get("heartbeat") == 12 and config.get("push_enabled") is False
        assert seen == [("heartbeat", 12), ("push_enabled", False)]
    finally:
        await config.stop()


@pytest.mark.parametrize(("key", "raw"), BAD)
def test_the_schema_refuses_each_bad_value(key: str, raw: bytes) -> None:
    try:
        value = json.loads(raw)
    except ValueError:
        return  # not JSON: refused before the schema (CLI: "VALUE must be JSON"; instance: logged)
    with pytest.raises(ConfigInvalid, match=key):
        validate(key, value)


@pytest.fixture(params=["single", "mariadb+redis+etcd"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    extra = {"PUSHWIRE_HEARTBEAT": "25"}
    if request.param != "single":  # backend_env gives MariaDB + Redis for anything but "single"
        extra["PUSHWIRE_REGISTRY_URL"] = f"{ETCD_URL}/{unique('cfg')}"
    env = await backend_env(request, tmp_path, **extra)
    async with live_server(env) as server:
        try:
            yield server
        finally:
            # The single node's registry engine is per process and outlives the server while
            # anything still references it: leave no config behind for the next test's server.
            for key in {key for key, _ in BAD} | {"heartbeat"}:
                await server.runtime.backends.registry.delete(PREFIX + key)


async def test_a_running_instance_survives_bad_config(live: LiveServer) -> None:
    runtime = live.runtime
    liveness = next(t for t in runtime.realtime_role._tasks if t.get_name() == "liveness")
    async with await Client.connect(live.ws_url(live.token("u1"))) as client:
        await client.recv_until("welcome")
        for key, raw in BAD:
            await runtime.backends.registry.put(PREFIX + key, raw)
        await asyncio.sleep(2.5)  # a few liveness ticks: heartbeat 0 would have closed the socket
        assert not liveness.done(), "the liveness task died"
        assert runtime.heartbeat == 25 and runtime.connections.heartbeat == 25 and runtime.push_enabled is True
        await client.send({"type": "ping"})
        assert (await client.recv_until("pong"))["type"] == "pong"
        await runtime.backends.registry.put(PREFIX + "heartbeat", b"7")
        async with asyncio.timeout(5):
            while runtime.heartbeat != 7:
                await asyncio.sleep(0.02)
        assert runtime.connections.heartbeat == 7 and not liveness.done()
