"""Three real `pushwire run` processes on MariaDB, Redis, Kafka (Tansu) and etcd, for cluster tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from pushwire.cli.tenancy import mint_token
from pushwire.sdk import AsyncServerClient
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tenants.views import AppCreated, AppLimits
from tests.live import free_port
from tests.services import ETCD_URL, KAFKA_URL, REDIS_URL, unique

SECRET = "cluster-secret-key-0123456789"


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws?token={token}"


@dataclass
class Cluster:
    env: dict[str, str]
    instances: list[Instance]
    created: AppCreated
    operator: Any
    tenant_id: str
    logs: list[str] = field(default_factory=list)

    def token(self, user: str, channels: list[str] | None = None) -> str:
        ck = self.created.client_key
        assert ck.secret
        return mint_token(self.created.app_id, user, ck.kid, ck.secret, 600, channels or [])

    def pusher(self, i: int) -> AsyncServerClient:
        k = self.created.server_key
        return AsyncServerClient(self.instances[i].http, k.key_id, k.secret)

    def admin(self, i: int) -> AsyncServerClient:
        return AsyncServerClient(self.instances[i].http, self.operator.key_id, self.operator.secret)

    def kill9(self, i: int) -> None:
        self.instances[i].proc.send_signal(signal.SIGKILL)
        self.instances[i].proc.wait(10)


def start_instance(name: str, env: dict[str, str], log_dir: str, args: Sequence[str] = ()) -> Instance:
    port = free_port()
    log = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushwire", "run", "--port", str(port), "--log-level", "warning", *args],
        env={**env, "PUSHWIRE_INSTANCE_ID": name},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Instance(name, port, proc)


def start_relay(name: str, env: dict[str, str], log_dir: str) -> subprocess.Popen[bytes]:
    """`pushwire relay` as its own process; its log (the start line) in <log_dir>/<name>.log."""
    log = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "pushwire", "relay"],
        env={**env, "PUSHWIRE_INSTANCE_ID": name},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(inst: Instance, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if inst.proc.poll() is not None:
                raise RuntimeError(f"{inst.name} exited with {inst.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(inst.http + "/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{inst.name} not ready")


@contextlib.asynccontextmanager
async def cluster(mysql_url: str, log_dir: str, size: int = 3, run_args: Sequence[str] = ()) -> AsyncIterator[Cluster]:
    run = unique("pw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env.update(
        PUSHWIRE_DATABASE_URL=mysql_url,
        PUSHWIRE_CACHE_URL=REDIS_URL,
        PUSHWIRE_BUS_URL=KAFKA_URL,
        PUSHWIRE_REGISTRY_URL=f"{ETCD_URL}/{run}",
        PUSHWIRE_KAFKA_TOPIC_PREFIX=run,
        PUSHWIRE_KAFKA_PARTITIONS="4",
        PUSHWIRE_SECRET_KEY=SECRET,
        PUSHWIRE_INSTANCE_TTL="3",
    )
    db = Database(mysql_url)
    svc = TenancyService(db, SecretBox(SECRET))
    tenant = await svc.create_tenant(unique("cluster"))
    created = await svc.create_app(tenant.tenant_id, "web", limits=AppLimits(push_rate=100_000, push_burst=100_000))
    operator = await svc.create_server_key(created.app_id, None, operator=True)
    await db.close()
    instances = []
    for i in range(size):  # one at a time: the first holds every outbox shard, as in a rolling start
        inst = start_instance(f"{run}-{i}", env, log_dir, run_args)
        instances.append(inst)
        await wait_ready(inst)
    c = Cluster(env, instances, created, operator, tenant.tenant_id)
    try:
        yield c
    finally:
        for inst in instances:
            if inst.proc.poll() is None:
                inst.proc.send_signal(signal.SIGTERM)
        for inst in instances:
            try:
                inst.proc.wait(15)
            except subprocess.TimeoutExpired:
                inst.proc.kill()


class Follower:
    """A client that follows one room across instances: reconnects elsewhere and resumes with since."""

    def __init__(self, c: Cluster, user: str, room: str, start: int) -> None:
        self.c, self.user, self.room = c, user, room
        self.at = start  # index of the instance it connects to
        self.epoch: str | None = None
        self.offset = 0
        self.got: list[int] = []
        self.recovered: list[bool] = []
        self.subscribed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        token = self.c.token(self.user, [self.room])
        while True:
            inst = self.c.instances[self.at]
            try:
                async with websockets.connect(inst.ws(token), open_timeout=5) as ws:
                    sub: dict[str, Any] = {"type": "subscribe", "channel": self.room}
                    if self.epoch is not None:
                        sub["since"] = {"epoch": self.epoch, "offset": self.offset}
                    await ws.send(json.dumps(sub))
                    async for raw in ws:
                        f = json.loads(raw)
                        if f["type"] == "subscribed" and f["channel"] == self.room:
                            if self.epoch is None:
                                self.epoch, self.offset = f["epoch"], f["offset"]
                            else:
                                self.recovered.append(f["recovered"])
                            self.subscribed.set()
                        elif f["type"] == "message" and f["channel"] == self.room and f["offset"] > self.offset:
                            self.offset = f["offset"]
                            self.got.append(f["offset"])
                        elif f["type"] == "ping":
                            await ws.send('{"type":"pong"}')
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass
            # the instance went away: try the next live one
            self.at = (self.at + 1) % len(self.c.instances)
            while self.c.instances[self.at].proc.poll() is not None:
                self.at = (self.at + 1) % len(self.c.instances)
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
