"""The HTTP load generator of push_api and e2e: PRE-SIGNED requests over raw keep-alive sockets.

httpx tops out near 300 requests/s on this machine and the StreamReader client of
bench/pushclient.py signs inside the measured window; neither may be the bottleneck. Here:

- `presign()` builds every request's bytes *before* the measured window: request line, Host,
  Content-Type, Content-Length and the four signature headers of the spec (X-Pushwire-Key,
  -Timestamp, -Nonce, -Signature; `pushwire.tenants.signing.sign`, one fresh nonce per request,
  one timestamp for the batch — used within `MAX_AGE` s of signing, well inside the 300 s window).
- `Conn`: an `asyncio.Protocol` (uvloop) per keep-alive HTTP/1.1 connection, pipelining off, one
  request in flight. It parses just the status line and Content-Length (a response without
  Content-Length is an error), keeps the body only when asked (batch results are counted).
- `closed_loop()`: N connections, each sends its next pre-signed request as soon as the answer
  to the previous one arrived; answers completing inside [warm-up, warm-up + duration] count.
  Server and stack CPU are read at the window's edges (timer callbacks, not after the drain).
- `OpenLoop`: request i is sent at start + i/rate on the next free connection of a pool, queued
  (and counted as `queued`) when none is free; its latency is measured from the *intended* time.

The generator reports its own CPU (`harness.CpuMeter`, "generator") and is flagged
generator-bound above 80 % of its core.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench import harness as h
from pushwire.tenants import signing

MAX_AGE = 240.0  # seconds a pre-signed request may wait before use (the server allows 300)


@dataclass
class Presigned:
    """Requests ready to write: `heads[i]` (headers, or headers + body) and `bodies[i]` (b"" if in head)."""

    heads: list[bytes]
    bodies: list[bytes]
    signed_at: float
    sign_seconds: float

    def __len__(self) -> int:
        return len(self.heads)

    def check_age(self) -> None:
        age = time.time() - self.signed_at
        if age > MAX_AGE:
            raise RuntimeError(f"pre-signed requests are {age:.0f} s old: the server would refuse their timestamp")


def presign(
    key_id: str, secret: str, port: int, path: str, bodies: Sequence[bytes], n: int, *, inline_body: bool | None = None
) -> Presigned:
    """n signed POSTs to `path`; request i carries bodies[i % len(bodies)] and a nonce of its own.

    Small bodies are appended to the head (one write); large ones (batches) are kept apart and
    shared between requests (`writelines`), so 10,000 batch requests do not copy 10 KiB each.
    """
    t0 = time.perf_counter()
    ts = str(int(time.time()))
    signed_at = time.time()
    prefixes = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n{signing.HEADER_KEY}: {key_id}\r\n{signing.HEADER_TIMESTAMP}: {ts}\r\n"
        ).encode()
        for b in bodies
    ]
    inline = inline_body if inline_body is not None else max(len(b) for b in bodies) <= 4096
    heads: list[bytes] = []
    out_bodies: list[bytes] = []
    m = len(bodies)
    sign = signing.sign
    for i in range(n):
        k = i % m
        body = bodies[k]
        nonce = secrets.token_urlsafe(18)
        sig = sign(secret, "POST", path, "", ts, nonce, body)
        tail = f"{signing.HEADER_NONCE}: {nonce}\r\n{signing.HEADER_SIGNATURE}: {sig}\r\n\r\n".encode()
        if inline:
            heads.append(prefixes[k] + tail + body)
            out_bodies.append(b"")
        else:
            heads.append(prefixes[k] + tail)
            out_bodies.append(body)
    return Presigned(heads, out_bodies, signed_at, time.perf_counter() - t0)


class Conn(asyncio.Protocol):
    """One keep-alive connection, one request in flight; calls `on_answer(conn, status, body)`
    when a whole response has arrived and `on_lost(conn, partial)` when the connection drops
    (`partial`: True when part of an answer had arrived)."""

    __slots__ = (
        "_body_at",
        "_status",
        "buf",
        "busy",
        "keep_body",
        "need",
        "on_answer",
        "on_lost",
        "sent_at",
        "slot",
        "transport",
    )

    def __init__(
        self, on_answer: Callable[[Conn, int, bytes], None], on_lost: Callable[[Conn, bool], None], keep_body: bool
    ) -> None:
        self.on_answer = on_answer
        self.on_lost = on_lost
        self.keep_body = keep_body
        self.buf = bytearray()
        self.need = -1  # total bytes of the current response once its head is parsed
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.slot = -1  # the request in flight (index), -1 when idle
        self.busy = False
        self._status = 0
        self._body_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, head: bytes, body: bytes, slot: int, now: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.slot = slot
        self.sent_at = now
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                i = head.find(b"\r\ncontent-length:")
                if i < 0:
                    raise RuntimeError(f"answer without Content-Length: {bytes(buf[:200])!r}")
                j = head.find(b"\r\n", i + 17)
                length = int(head[i + 17 : j if j >= 0 else len(head)])
                self.need = end + 4 + length
                self._status = int(buf[9:12])
                self._body_at = end + 4
            if len(buf) < self.need:
                return
            body = bytes(buf[self._body_at : self.need]) if self.keep_body else b""
            del buf[: self.need]
            self.need = -1
            self.busy = False
            self.on_answer(self, self._status, body)
            if not buf:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        partial = bool(self.buf) and self.busy
        self.transport = None
        self.on_lost(self, partial)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, factory: Callable[[], Conn]) -> Conn:
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(factory, "127.0.0.1", port)
    return proto


# -- closed loop -------------------------------------------------------------------------------
@dataclass
class Window:
    """Figures of one measured window (closed or open loop)."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    cpu_pct: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    exhausted: bool = False
    dropped: int = 0


def _stack_pids(server_pid: int) -> dict[str, int]:
    return {"server": server_pid, "generator": os.getpid()}


async def closed_loop(
    port: int,
    server_pid: int,
    reqs: Presigned,
    *,
    connections: int,
    warmup: float,
    duration: float,
    count: Callable[[int, bytes], int],
    keep_body: bool,
    on_start: Callable[[], None] | None = None,
) -> Window:
    """Closed-loop load from `connections` connections; `count(status, body)` = pushes accepted by one answer."""
    reqs.check_age()
    loop = asyncio.get_running_loop()
    w = Window()
    heads, bodies = reqs.heads, reqs.bodies
    total = len(heads)
    cursor = 0
    live: set[Conn] = set()
    tasks: set[asyncio.Task[None]] = set()
    done = loop.create_future()
    t_start = t_end = float("inf")
    stopping = False

    def next_request(c: Conn) -> None:
        nonlocal cursor
        now = time.perf_counter()
        if stopping or now >= t_end:
            finish(c)
            return
        if cursor >= total:
            w.exhausted = True
            finish(c)
            return
        c.send(heads[cursor], bodies[cursor], cursor, now)
        cursor += 1

    def finish(c: Conn) -> None:
        live.discard(c)
        c.close()
        if not live and not done.done():
            done.set_result(None)

    def on_answer(c: Conn, status: int, body: bytes) -> None:
        t1 = time.perf_counter()
        if t_start <= t1 <= t_end:
            w.statuses[status] += 1
            w.latencies.append(t1 - c.sent_at)
            w.accepted += count(status, body)
        next_request(c)

    def on_lost(c: Conn, partial: bool) -> None:
        if c not in live:
            return
        live.discard(c)
        if c.busy and t_start <= time.perf_counter() <= t_end:
            w.statuses[0] += 1
            w.dropped += 1
        if not stopping and time.perf_counter() < t_end:
            spawn()
        elif not live and not done.done():
            done.set_result(None)

    def spawn() -> None:
        task = loop.create_task(reconnect())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def reconnect() -> None:
        try:
            c = await connect(port, factory)
        except OSError:
            await asyncio.sleep(0.05)
            if time.perf_counter() < t_end:
                spawn()
            elif not live and not done.done():
                done.set_result(None)
            return
        live.add(c)
        next_request(c)

    def factory() -> Conn:
        return Conn(on_answer, on_lost, keep_body)

    conns = [await connect(port, factory) for _ in range(connections)]
    meter = h.CpuMeter(_stack_pids(server_pid))
    marks: dict[str, float] = {}
    begin = time.perf_counter()
    t_start = begin + warmup
    t_end = t_start + duration

    def window_start() -> None:
        if on_start is not None:
            on_start()
        meter.start()
        marks["t0"] = time.perf_counter()
        marks.update({f"{k}0": h.cpu_seconds(p) for k, p in meter.pids.items() if _alive(p)})

    def window_end() -> None:
        marks["t1"] = time.perf_counter()
        for k, p in meter.pids.items():
            if f"{k}0" in marks and _alive(p):
                w.cpu_seconds[k] = round(h.cpu_seconds(p) - marks[f"{k}0"], 4)
        w.cpu_pct = meter.stop()

    loop.call_later(warmup, window_start)
    loop.call_later(warmup + duration, window_end)
    for c in conns:
        live.add(c)
        next_request(c)
    try:
        await asyncio.wait_for(done, warmup + duration + 30.0)
    except TimeoutError:
        stopping = True
        for c in list(live):
            c.close()
    await asyncio.sleep(0)
    if "t1" not in marks:  # every connection failed before the end of the window
        window_end()
    w.wall = marks.get("t1", 0.0) - marks.get("t0", 0.0)
    return w


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/stat")


# -- open loop ---------------------------------------------------------------------------------
class OpenLoop:
    """Open-loop sender over a pool of keep-alive connections (see the module docstring).

    `answers[i]` = (status, seconds from the intended send time to the answer) per request.
    A connection the server closed while idle (keep-alive timeout) is replaced; a request whose
    connection dropped before any byte of its answer arrived is re-sent once on another one.
    """

    def __init__(self, port: int, reqs: Presigned, pool: int) -> None:
        self.port = port
        self.reqs = reqs
        self.pool = pool
        self.free: collections.deque[Conn] = collections.deque()
        self.pending: collections.deque[int] = collections.deque()
        self.answers: dict[int, tuple[int, float]] = {}
        self.intended: list[float] = []
        self.queued = 0
        self.max_pending = 0
        self.resent = 0
        self.retried: set[int] = set()
        self.conns: set[Conn] = set()
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()

    def _factory(self) -> Conn:
        return Conn(self._on_answer, self._on_lost, False)

    async def open(self) -> None:
        for _ in range(self.pool):
            c = await connect(self.port, self._factory)
            self.conns.add(c)
            self.free.append(c)

    def _dispatch(self, i: int) -> None:
        while self.free:
            c = self.free.popleft()
            if c.transport is None:
                continue
            c.send(self.reqs.heads[i], self.reqs.bodies[i], i, time.perf_counter())
            return
        self.pending.append(i)
        self.queued += 1
        self.max_pending = max(self.max_pending, len(self.pending))

    def _on_answer(self, c: Conn, status: int, _body: bytes) -> None:
        i = c.slot
        c.slot = -1
        self.answers[i] = (status, time.perf_counter() - self.intended[i])
        if self.pending:
            j = self.pending.popleft()
            c.send(self.reqs.heads[j], self.reqs.bodies[j], j, time.perf_counter())
        else:
            self.free.append(c)

    def _on_lost(self, c: Conn, partial: bool) -> None:
        self.conns.discard(c)
        with_request = c.busy and c.slot >= 0
        if with_request:
            i = c.slot
            if partial or i in self.retried:
                self.answers[i] = (0, time.perf_counter() - self.intended[i])
            else:
                self.retried.add(i)
                self.resent += 1
                self.pending.appendleft(i)
        if not self.closing:
            task = asyncio.get_running_loop().create_task(self._replace())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _replace(self) -> None:
        try:
            c = await connect(self.port, self._factory)
        except OSError:
            return
        self.conns.add(c)
        if self.pending:
            j = self.pending.popleft()
            c.send(self.reqs.heads[j], self.reqs.bodies[j], j, time.perf_counter())
        else:
            self.free.append(c)

    async def run(self, rate: float, start_perf: float) -> None:
        """Send request i at start_perf + i/rate (perf_counter clock); returns after the last send."""
        self.reqs.check_age()
        n = len(self.reqs)
        self.intended = [start_perf + i / rate for i in range(n)]
        for i in range(n):
            delay = self.intended[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dispatch(i)

    def close(self) -> None:
        self.closing = True
        for c in list(self.conns):
            c.close()


def statuses(answers: dict[int, tuple[int, float]]) -> dict[str, int]:
    out: collections.Counter[int] = collections.Counter(s for s, _ in answers.values())
    return {str(k): v for k, v in sorted(out.items())}
