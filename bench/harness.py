"""Shared parts of the benchmarks.

- CPU pinning: the server runs under `taskset -c 0`; the generator (this process) pins itself to CPU 1.
- `Server`: a `pushwire run` subprocess with given env vars, waited for on /health.
- `backend()`: a migrated throwaway database (SQLite file, or MariaDB `pwbench_<hex>` + Redis
  db 14), dropped afterwards; `create_bench_app()` makes a tenant/app/keys through the service layer.
- `CpuMeter` / `rss_kib()`: process CPU% from /proc/<pid>/stat and RSS from /proc/<pid>/status.
- A raw HTTP/1.1 keep-alive client (cheap enough not to bound the generator) and an httpx one.
- WebSocket client fleets: the `websockets` library (compression off) or a raw protocol that
  counts frames from their headers without building a Python object per frame.
- `Profiler`: optional py-spy sampling of the server, summarised into top frames.
- Tables on stdout and `bench/results/<YYYY-MM-DD>-<scenario>.json`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from pushwire.tenants import signing

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: `pushwire` and `py-spy` live beside python
RESULTS_DIR = ROOT / "bench" / "results"
SERVER_CPU = 0
GENERATOR_CPU = 1
GENERATOR_BOUND_PCT = 80.0
MYSQL_SERVER_URL = os.environ.get("PUSHWIRE_BENCH_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")
REDIS_URL = os.environ.get("PUSHWIRE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
NOFILE = 65_536
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- process set-up ---------------------------------------------------------------------------
def raise_nofile(wanted: int = NOFILE) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(wanted, hard), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_generator() -> bool:
    """Pin this process (the load generator) to CPU 1; False when the machine has one CPU."""
    if (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {GENERATOR_CPU})
    return True


def run_async(coro: Awaitable[T]) -> T:
    """Run a generator phase on uvloop (the field notes: the generator must not be the bottleneck)."""
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc figures -----------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


SERVICES = ("mariadbd", "mysqld", "redis-server")


def service_pids() -> dict[str, int]:
    """PIDs of the database and cache servers on this machine (their CPU is the server's work, not noise)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            if comm in SERVICES:
                found.setdefault("redis" if comm == "redis-server" else "mariadb", int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle, not iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


class CpuMeter:
    """CPU% of several processes over one window: `start()`, then `stop()` → {name: percent of one core}.

    Also `others`: what the rest of the machine used meanwhile (percent of one core). Another
    benchmark or test run on the same machine shows up there and makes the figures unreliable.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, **service_pids()}
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self._m0 = 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._m0 = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        used = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                used[name] = cpu_seconds(pid) - self._c0[name]
        others = max(0.0, machine_busy_seconds() - self._m0 - sum(used.values()))
        out = {name: round(100.0 * v / wall, 1) for name, v in used.items()}
        out["others"] = round(100.0 * others / wall, 1)
        return out


OTHERS_BUSY_PCT = 15.0


def wait_for_quiet(max_wait: float) -> float:
    """Wait (at most `max_wait` s) until the machine is nearly idle; returns the busy % last seen.

    Benchmarks share the machine with whatever else runs (tests, other benchmarks); their CPU
    lands on the pinned cores too and makes the figures meaningless.
    """
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        t0, m0 = time.monotonic(), machine_busy_seconds()
        time.sleep(1.0)
        busy = 100.0 * (machine_busy_seconds() - m0) / (time.monotonic() - t0)
        if busy <= OTHERS_BUSY_PCT or time.monotonic() >= deadline:
            if said or busy > OTHERS_BUSY_PCT:
                print(f"  machine busy {busy:.0f}% of one core {'(going ahead)' if busy > OTHERS_BUSY_PCT else ''}",
                      flush=True)
            return round(busy, 1)
        if not said:
            print(f"  other processes keep the machine busy ({busy:.0f}% of one core); waiting up to "
                  f"{max_wait:.0f} s for quiet …", flush=True)
            said = True


def foreign_load(cpu: dict[str, float]) -> bool:
    """True when processes other than the server and the generator used a noticeable share of the CPUs."""
    return cpu.get("others", 0.0) > OTHERS_BUSY_PCT


def generator_bound(cpu: dict[str, float]) -> bool:
    return cpu.get("generator", 0.0) > GENERATOR_BOUND_PCT


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
            yield Backend(name, "SQLite + memory", url,
                          {**common, "PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_CACHE_URL": "memory://"}, workdir)
        elif name == "mariadb":
            db = f"pwbench_{secrets.token_hex(6)}"
            url = f"{MYSQL_SERVER_URL}/{db}"
            _in_thread(lambda: asyncio.run(_mysql_admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")))
            try:
                _in_thread(lambda: upgrade(url))
                _in_thread(lambda: asyncio.run(_flush_redis()))
                yield Backend(name, "MariaDB + Redis", url,
                              {**common, "PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_CACHE_URL": REDIS_URL}, workdir)
            finally:
                _in_thread(lambda: asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {db}")))
                with contextlib.suppress(Exception):
                    _in_thread(lambda: asyncio.run(_flush_redis()))
        else:
            raise SystemExit(f"unknown backend {name!r} (sqlite, mariadb)")
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
            return BenchApp(tenant.tenant_id, created.app_id, created.server_key.key_id, created.server_key.secret,
                            created.client_key.kid, created.client_key.secret)
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
        cmd = ["taskset", "-c", str(SERVER_CPU), str(BIN / "pushwire"), "run",
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        if (os.cpu_count() or 1) < 2:
            cmd = cmd[3:]
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.backend.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=raise_nofile, start_new_session=True)
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


# -- HTTP clients for the signed push API ------------------------------------------------------
class Signer:
    """Header block of a signed POST: one fresh nonce per request (nonces are single-use)."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret

    def headers(self, path: str, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        nonce = secrets.token_urlsafe(18)
        sig = signing.sign(self.secret, "POST", path, "", ts, nonce, body)
        return {"Content-Type": "application/json", signing.HEADER_KEY: self.key_id, signing.HEADER_TIMESTAMP: ts,
                signing.HEADER_NONCE: nonce, signing.HEADER_SIGNATURE: sig}


class RawHttp:
    """One HTTP/1.1 keep-alive connection; requests are written by hand, responses need Content-Length."""

    def __init__(self, port: int, signer: Signer) -> None:
        self.port = port
        self.signer = signer
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        # A kept-alive connection the server closed while idle (uvicorn: 5 s) fails on first use:
        # retry once on a new connection, as HTTP clients do for idempotent-safe reuse failures.
        for attempt in (0, 1):
            reused = self.writer is not None
            if self.writer is None:
                try:
                    await self._connect()
                except OSError:
                    return 0, b""
            assert self.reader is not None and self.writer is not None
            hdrs = "".join(f"{k}: {v}\r\n" for k, v in self.signer.headers(path, body).items())
            self.writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Length: {len(body)}\r\n{hdrs}\r\n"
                .encode() + body
            )
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.aclose()
                if not reused or attempt:
                    return 0, b""
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        length = int(lower[i + 15 : lower.index(b"\r\n", i)]) if i >= 0 else 0
        data = await self.reader.readexactly(length) if length else b""
        if b"connection: close" in lower:
            await self.aclose()
        return status, data

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxPoster:
    """The same interface over a shared httpx.AsyncClient (HTTP/1.1 keep-alive pool)."""

    def __init__(self, client: Any, signer: Signer) -> None:
        self.client = client
        self.signer = signer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        import httpx

        try:
            r = await self.client.post(path, content=body, headers=self.signer.headers(path, body))
        except httpx.HTTPError:
            return 0, b""
        return r.status_code, r.content

    async def aclose(self) -> None: ...


@contextlib.asynccontextmanager
async def posters(kind: str, port: int, signer: Signer, n: int) -> Any:
    """n posters: `raw` (own connection each) or `httpx` (one client, pool of n connections)."""
    if kind == "raw":
        conns = [RawHttp(port, signer) for _ in range(n)]
        try:
            yield conns
        finally:
            for c in conns:
                await c.aclose()
    elif kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
            yield [HttpxPoster(client, signer) for _ in range(n)]
    else:
        raise SystemExit(f"unknown HTTP client {kind!r} (raw, httpx)")


# -- WebSocket clients -------------------------------------------------------------------------
MESSAGE_PREFIX = b'{"type":"message"'
WELCOME_PREFIX = b'{"type":"welcome"'
PING_PREFIX = b'{"type":"ping"'
PONG = b'{"type":"pong"}'
PING = b'{"type":"ping"}'


class DeliveryStats:
    """Counts message frames across all clients; every `sample_every`-th one is parsed for latency."""

    def __init__(self, sample_every: int = 50) -> None:
        self.messages = 0
        self.other = 0
        self.sample_every = sample_every
        self.e2e: list[float] = []  # now - data.t (the generator's clock when it sent the push)
        self.from_ts: list[float] = []  # now - ts (the server's timestamp of the message)
        self.closes: collections.Counter[str] = collections.Counter()
        self.last_frame = 0.0  # monotonic time of the last message frame (pongs etc. do not count)

    def sample(self, payload: bytes) -> None:
        now = time.time()
        try:
            msg = msgspec.json.decode(payload)
            data = msg.get("data")
            if isinstance(data, dict) and "t" in data:
                self.e2e.append(now - float(data["t"]))
            self.from_ts.append(now - dt.datetime.fromisoformat(msg["ts"]).timestamp())
        except (msgspec.DecodeError, KeyError, ValueError, TypeError):
            self.other += 1

    def reset_samples(self) -> None:
        self.e2e = []
        self.from_ts = []


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payloads here are < 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


class RawWsClient(asyncio.Protocol):
    """Minimal WebSocket client: hand-written upgrade, then frames counted from their headers.

    No per-frame object: a buffer scan per read. Answers WS pings and the app-level
    `{"type":"ping"}`; records close codes.
    """

    def __init__(self, port: int, path: str, stats: DeliveryStats, welcome: asyncio.Future[None]) -> None:
        self.port = port
        self.path = path
        self.stats = stats
        self.welcome = welcome
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(  # type: ignore[union-attr]
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[9:12])
            if status != b"101":
                self._fail(f"http {status.decode(errors='replace')}")
                return
            self.upgraded = True
            del buf[: end + 4]
        stats = self.stats
        n = len(buf)
        pos = 0
        got_message = False
        while n - pos >= 2:
            ln = buf[pos + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                h = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                h = 10
            start = pos + h
            end = start + ln
            if end > n:
                break
            op = buf[pos] & 0x0F
            if op == 1:
                if buf.startswith(MESSAGE_PREFIX, start):
                    stats.messages += 1
                    got_message = True
                    if stats.messages % stats.sample_every == 0:
                        stats.sample(bytes(buf[start:end]))
                elif buf.startswith(WELCOME_PREFIX, start):
                    if not self.welcome.done():
                        self.welcome.set_result(None)
                elif buf.startswith(PING_PREFIX, start):
                    self.transport.write(_client_frame(1, PONG))  # type: ignore[union-attr]
                else:
                    stats.other += 1
            elif op == 9:
                self.transport.write(_client_frame(10, bytes(buf[start:end])))  # type: ignore[union-attr]
            elif op == 8:
                code = (buf[start] << 8) | buf[start + 1] if ln >= 2 else 1005
                self._fail(f"close {code}")
                return
            pos = end
        if pos:
            del buf[:pos]
        if got_message:
            stats.last_frame = time.monotonic()

    def _fail(self, why: str) -> None:
        if not self.closed:
            self.stats.closes[why] += 1
        self.closed = True
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.stats.closes["connection lost"] += 1
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError("connection lost before welcome"))

    async def ping(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(_client_frame(1, PING))

    async def aclose(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.transport.write(_client_frame(8, (1000).to_bytes(2, "big")))
            self.transport.close()


class WebsocketsClient:
    """The `websockets` library client (compression off); one reader task per connection."""

    def __init__(self, port: int, path: str, stats: DeliveryStats) -> None:
        self.url = f"ws://127.0.0.1:{port}{path}"
        self.stats = stats
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, compression=None, ping_interval=None, open_timeout=60, max_size=2**20)
        self.task = asyncio.create_task(self._read())
        await self.welcome

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        stats = self.stats
        recv = self.ws.recv
        try:
            while True:
                msg = await recv(decode=False)
                if msg.startswith(MESSAGE_PREFIX):
                    stats.messages += 1
                    stats.last_frame = time.monotonic()
                    if stats.messages % stats.sample_every == 0:
                        stats.sample(msg)
                elif msg.startswith(WELCOME_PREFIX):
                    if not self.welcome.done():
                        self.welcome.set_result(None)
                elif msg.startswith(PING_PREFIX):
                    await self.ws.send(PONG.decode())
                else:
                    stats.other += 1
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code not in (1000, 1001) or not self.welcome.done():
                stats.closes[f"close {exc.rcvd.code if exc.rcvd else 'none'}"] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - count, never crash the generator
            stats.closes[type(exc).__name__] += 1
        finally:
            if not self.welcome.done():
                self.welcome.set_exception(ConnectionError("closed before welcome"))

    async def ping(self) -> None:
        if self.ws is not None:
            await self.ws.send(PING.decode())

    async def aclose(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


class Fleet:
    """N WebSocket clients for distinct users u0..uN-1 of one app, grown in steps."""

    def __init__(self, kind: str, port: int, app: BenchApp, stats: DeliveryStats) -> None:
        if kind not in ("websockets", "raw"):
            raise SystemExit(f"unknown WebSocket client {kind!r} (websockets, raw)")
        self.kind = kind
        self.port = port
        self.app = app
        self.stats = stats
        self.clients: list[Any] = []
        self.failed: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self.clients)

    async def _open_one(self, i: int) -> Any:
        path = f"/api/v1/ws?token={self.app.token(f'u{i}')}"
        if self.kind == "websockets":
            client = WebsocketsClient(self.port, path, self.stats)
            await client.open()
            return client
        loop = asyncio.get_running_loop()
        welcome: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(lambda: RawWsClient(self.port, path, self.stats, welcome),
                                                "127.0.0.1", self.port)
        await asyncio.wait_for(welcome, 60)
        return proto

    async def grow(self, total: int, concurrency: int = 64) -> float:
        """Open clients until `total` are connected (each waits for its welcome); returns seconds taken."""
        t0 = time.monotonic()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                try:
                    self.clients.append(await self._open_one(i))
                except Exception as exc:  # noqa: BLE001
                    self.failed[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

        await asyncio.gather(*(one(i) for i in range(len(self.clients), total)))
        return time.monotonic() - t0

    async def keepalive(self, every: float = 20.0) -> None:
        """Send `{"type":"ping"}` from each client every `every` seconds, spread evenly.

        The server closes a client that has *sent* nothing for 2 × heartbeat (4003), and it only
        pings clients it has sent nothing to — so a receive-only client on a busy channel is
        never prompted and gets closed. Real clients keep their own heartbeat; so do these.
        """
        i = 0
        while True:
            await asyncio.sleep(0.5)
            n = len(self.clients)
            for _ in range(max(1, int(n * 0.5 / every))):
                if not n:
                    break
                client = self.clients[i % n]
                i += 1
                with contextlib.suppress(Exception):
                    await client.ping()

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)
        self.clients = []


# -- py-spy ------------------------------------------------------------------------------------
_FRAME_RE = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::\d+)?\)$")


class Profiler:
    """`py-spy record --format raw` of a process for a window; `finish()` → top frames by self and total time."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 200) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = BIN / "py-spy"
        if not exe.exists():
            found = shutil.which("py-spy")
            if found is None:
                print("  (py-spy not installed: `.venv/bin/pip install py-spy`; profiling skipped)")
                return
            exe = Path(found)
        cmd = [str(exe), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
               "--format", "raw", "--output", str(out), "--nonblocking"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, top: int = 15) -> dict[str, Any]:
        if self.proc is None:
            return {}
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"error": "py-spy did not finish"}
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-300:]}
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        inner: collections.Counter[str] = collections.Counter()
        prefixes: dict[str, list[str]] = {}  # first frame → the chain every stack from it shares
        samples = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in (_short(f) for f in stack.split(";")) if f]
            if not frames:
                continue
            samples += n
            known = prefixes.get(frames[0])
            if known is None:
                prefixes[frames[0]] = frames[:-1]
            else:
                k = 0
                while k < len(known) and k < len(frames) - 1 and known[k] == frames[k]:
                    k += 1
                prefixes[frames[0]] = known[:k]
            own[frames[-1]] += n
            for f in set(frames):
                total[f] += n
            # The innermost frame of our own code: which pushwire function the time is spent under.
            mine = next((f for f in reversed(frames) if "(pushwire/" in f), "(outside pushwire code)")
            inner[mine] += n

        # Frames on a thread's root chain (<module>, click, uvicorn.run, Runner.run …; Thread.run …)
        # are ancestors of every sample of that thread: they say nothing, so leave them out of total%.
        for chain in prefixes.values():
            for f in chain:
                total.pop(f, None)

        def pct(c: collections.Counter[str]) -> list[list[Any]]:
            return [[f, round(100.0 * n / samples, 1)] for f, n in c.most_common(top)]

        return {"samples": samples, "raw_file": _rel(self.out), "self_pct": pct(own),
                "total_pct": pct(total), "innermost_pushwire_pct": pct(inner)}


def profile_path(scenario: str, tag: str, *parts: object) -> Path:
    """bench/results/<date>-<scenario>[-<tag>]-<parts…>.pyspy.txt (the directory is created)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = "-".join([dt.date.today().isoformat(), scenario, *([tag] if tag else []), *map(str, parts)])
    return RESULTS_DIR / f"{name}.pyspy.txt"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _short(frame: str) -> str:
    if frame.startswith(("process ", "thread ")):
        return ""
    m = _FRAME_RE.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/pushwire/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1] if marker != "/pushwire/" else "pushwire/" + file.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({file})"


def print_profile(title: str, prof: dict[str, Any], top: int = 12) -> None:
    if not prof or "self_pct" not in prof:
        if prof:
            print(f"  profile {title}: {prof.get('error')}")
        return
    print(f"\n  py-spy {title} ({prof['samples']} samples; raw stacks in {prof['raw_file']})")
    print("    self%  function (file)                         │ total%  function (file)")
    for (f1, p1), (f2, p2) in zip(prof["self_pct"][:top], prof["total_pct"][:top], strict=False):
        print(f"    {p1:5.1f}  {f1[:60]:<60} │ {p2:5.1f}  {f2[:60]}")
    print("    by innermost pushwire function:")
    for f, p in prof["innermost_pushwire_pct"][:top]:
        print(f"    {p:5.1f}  {f}")


# -- statistics and output ---------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[k]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 2)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
    return str(v)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  " + "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  " + "  ".join("─" * w for w in widths))
    for r in cells:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "server_cpu": SERVER_CPU, "generator_cpu": GENERATOR_CPU}


def write_results(scenario: str, data: dict[str, Any], argv: Sequence[str] = (), tag: str = "") -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{dt.date.today().isoformat()}-{scenario}{'-' + tag if tag else ''}.json"
    doc = {"scenario": scenario, "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "command": " ".join(["python -m bench", *argv]), "machine": machine(), **data}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n  → {_rel(path)}")
    return path


@dataclass
class Notes:
    """Flags collected while running (generator-bound phases, errors), printed and saved at the end."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)
        print(f"  ! {text}")
