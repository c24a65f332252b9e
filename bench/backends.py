"""Backends and the Pushwire server under test.

- `backend()`: a migrated throwaway database — `sqlite` (SQLite file + memory cache/bus + local
  registry), `mariadb` (MariaDB `pwbench_<hex>` + Redis db 14, flushed before and after) or
  `durable` (that plus Kafka/Tansu bus and etcd registry: the full durable path) — dropped afterwards.
- `create_bench_app()`: a tenant/app/keys through the service layer, limits raised.
- `Server`: `taskset -c 0 pushwire run` with the backend's env, waited for on GET /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.harness import BIN, ETCD_URL, KAFKA_URL, MYSQL_SERVER_URL, REDIS_URL, SERVER_CPU, free_port, raise_nofile

T = TypeVar("T")


# -- backends ----------------------------------------------------------------------------------
@dataclass
class Backend:
    name: str
    label: str
    database_url: str
    env: dict[str, str]
    workdir: Path


def _in_thread(fn: Callable[[], T]) -> T:
    """Run blocking set-up that starts its own event loop (Alembic) even if a loop is running."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


async def _mysql_admin(sql: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(MYSQL_SERVER_URL + "/", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


async def _flush_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@contextlib.contextmanager
def backend(name: str) -> Iterator[Backend]:
    """`sqlite`: the single-node default (SQLite + memory cache/bus + local registry).
    `mariadb`: a throwaway MariaDB database + Redis cache (db 14, flushed before and after)."""
    from pushwire.storage.migrate import upgrade

    workdir = Path(tempfile.mkdtemp(prefix=f"pwbench-{name}-"))
    secret = "bench-" + secrets.token_urlsafe(24)
    common = {"PUSHWIRE_SECRET_KEY": secret, "PUSHWIRE_BUS_URL": "memory://", "PUSHWIRE_REGISTRY_URL": "local://"}
    try:
        if name == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'pushwire.db'}"
            _in_thread(lambda: upgrade(url))
            yield Backend(
                name,
                "SQLite + memory",
                url,
                {**common, "PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_CACHE_URL": "memory://"},
                workdir,
            )
        elif name in ("mariadb", "durable"):
            db = f"pwbench_{secrets.token_hex(6)}"
            url = f"{MYSQL_SERVER_URL}/{db}"
            _in_thread(lambda: asyncio.run(_mysql_admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")))
            try:
                _in_thread(lambda: upgrade(url))
                _in_thread(lambda: asyncio.run(_flush_redis()))
                env = {**common, "PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_CACHE_URL": REDIS_URL}
                label = "MariaDB + Redis"
                if name == "durable":  # the full durable path: outbox relay → Kafka (Tansu) → router; etcd registry
                    env |= {
                        "PUSHWIRE_BUS_URL": KAFKA_URL,
                        "PUSHWIRE_REGISTRY_URL": ETCD_URL,
                        "PUSHWIRE_KAFKA_TOPIC_PREFIX": db,
                        "PUSHWIRE_INSTANCE_ID": db,
                    }
                    label = "MariaDB + Redis + Kafka (Tansu) + etcd"
                yield Backend(name, label, url, env, workdir)
            finally:
                _in_thread(lambda: asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {db}")))
                with contextlib.suppress(Exception):
                    _in_thread(lambda: asyncio.run(_flush_redis()))
        else:
            raise SystemExit(f"unknown backend {name!r} (sqlite, mariadb, durable)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class BenchApp:
    tenant_id: str
    app_id: str
    key_id: str
    key_secret: str
    kid: str
    client_secret: str

    def token(self, user_id: str, ttl: int = 3600) -> str:
        from pushwire.cli.tenancy import mint_token

        return mint_token(self.app_id, user_id, self.kid, self.client_secret, ttl, [])


def create_bench_app(b: Backend) -> BenchApp:
    """Tenant, app (push rate/burst and connection limits raised) and keys, through the service layer."""
    from pushwire.storage.database import Database
    from pushwire.tenants.crypto import SecretBox
    from pushwire.tenants.service import TenancyService
    from pushwire.tenants.views import AppLimits

    async def work() -> BenchApp:
        db = Database(b.database_url)
        await db.start()
        try:
            svc = TenancyService(db, SecretBox(b.env["PUSHWIRE_SECRET_KEY"]))
            tenant = await svc.create_tenant(f"bench-{secrets.token_hex(4)}")
            limits = AppLimits(push_rate=10**6, push_burst=10**6, max_connections=100_000, max_connections_per_user=100)
            created = await svc.create_app(tenant.tenant_id, "bench", None, limits)
            assert created.client_key.secret is not None
            return BenchApp(
                tenant.tenant_id,
                created.app_id,
                created.server_key.key_id,
                created.server_key.secret,
                created.client_key.kid,
                created.client_key.secret,
            )
        finally:
            await db.close()

    return _in_thread(lambda: asyncio.run(work()))


# -- the server subprocess ---------------------------------------------------------------------
class Server:
    """`taskset -c 0 pushwire run` with the backend's env; `start()` waits for GET /health."""

    def __init__(self, b: Backend, port: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.backend = b
        self.port = port or free_port()
        self.env = {**os.environ, **b.env, **(extra_env or {})}
        self.log_path = b.workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        cmd = [
            "taskset",
            "-c",
            str(SERVER_CPU),
            str(BIN / "pushwire"),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if (os.cpu_count() or 1) < 2:
            cmd = cmd[3:]
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.backend.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.base_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_errors(self) -> list[str]:
        """Distinct ERROR/Traceback lines the server logged (at most 10), for the results."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            hits = [ln for ln in text if "ERROR" in ln or "Traceback" in ln or "Exception" in ln]
            return list(dict.fromkeys(hits))[:10]
        return []

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
