"""The load generator: picows WebSocket clients on uvloop, counting frames on the hot path.

Each client is a `picows.WSListener` whose `on_ws_frame` only bumps counters; every
`sample_every`-th message frame is copied and parsed for the send time `t` the publisher
embedded in the payload (latency = receipt − t). Four dialects:

- `pushwire`: `/api/v1/ws?token=…`; waits for `welcome`; answers `{"type":"ping"}`; message
  frames start with `{"type":"message"`; `subscribed` frames are kept for the recovery scenario.
- `pusher` (Pusher Channels, `/app/{key}?protocol=7`): waits for `pusher:connection_established`,
  sends `pusher:subscribe` to `bench` (PUSHER_CHANNEL) and is ready on its
  `pusher_internal:subscription_succeeded`; answers `pusher:ping`; message frames start with
  `{"event":"bench"` and carry the payload as a JSON string (`"data":"{\\"t\\":…}"`).
- `plain` (the bare websockets / picows servers): every text frame is a message.
- `socketio`: Engine.IO v4 over WebSocket — `0{…}` open → send `40`; `40{…}` connected; `2` → `3`;
  `42["m",{…}]` is a message.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = WSMsgType.TEXT
MESSAGE = b'{"type":"message"'
PING = b'{"type":"ping"}'
PONG = b'{"type":"pong"}'
PUSHER_CHANNEL = "bench"  # the channel (and event) the Pusher fleet subscribes to and is published on
PUSHER_MESSAGE = b'{"event":"bench"'
PUSHER_PING = b'{"event":"pusher:ping","data":{}}'
PUSHER_PONG = b'{"event":"pusher:pong","data":{}}'
PUSHER_SUBSCRIBE = b'{"event":"pusher:subscribe","data":{"auth":"","channel":"bench"}}'
# the client pings a server that closes silent clients (Pushwire, either protocol): see Fleet.keepalive
KEEPALIVE_PING = {"pushwire": PING, "pusher": PUSHER_PING}
TICK = 0.02  # publishing tick: each tick sends what is due, in messages of ≤ 100


class Stats:
    """Shared counters of one fleet: message frames, sampled latencies (s), close reasons."""

    def __init__(self, sample_every: int = 97) -> None:
        self.messages = 0
        self.sample_every = sample_every
        self.latency: list[float] = []
        self.from_ts: list[float] = []  # Pushwire only: receipt − the server's `ts` of the message
        self.closes: collections.Counter[str] = collections.Counter()
        self.last_frame = 0.0
        self.min_t = 0.0  # samples sent before this (a previous run's stragglers) are ignored

    def sample(self, payload: bytes) -> None:
        now = time.time()
        try:
            i = payload.find(b'"t":') + 4
            if i == 3:  # the Pusher protocol: the payload is a JSON string inside the frame, `\"t\":`
                i = payload.index(b'\\"t\\":') + 6
            j = i
            while payload[j] in b"0123456789.":
                j += 1
            t = float(payload[i:j])
            if t < self.min_t:
                return
            self.latency.append(now - t)
            k = payload.find(b'"ts":"')  # Pushwire's own timestamp (after the commit): split publish vs delivery
            if k >= 0:
                ts = payload[k + 6 : payload.index(b'"', k + 6)].decode()
                self.from_ts.append(now - dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
        except (ValueError, IndexError):
            self.closes["unparsable sample"] += 1


class Client(WSListener):
    """One connection; `ready` resolves when the server has greeted it (welcome / Socket.IO connect /
    Pusher's subscription_succeeded for `bench`)."""

    def __init__(self, stats: Stats, dialect: str) -> None:
        self.stats = stats
        self.dialect = dialect
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None
        self.messages = 0
        self.frames: list[bytes] = []  # pushwire control frames (welcome, subscribed) when kept
        self.keep_control = False
        self.target = -1  # recovery: `done_at` is set when `messages` reaches it
        self.done_at = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.dialect == "plain":
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                self.stats.closes[f"close {int(frame.get_close_code().value)}"] += 1
                transport.disconnect()
            return
        d = self.dialect
        if d == "plain":
            is_msg = True
        elif d == "pushwire":
            mv = frame.get_payload_as_memoryview()
            is_msg = mv[:17] == MESSAGE
            if not is_msg:
                self._pushwire_control(transport, frame.get_payload_as_bytes())
                return
        elif d == "pusher":
            mv = frame.get_payload_as_memoryview()
            is_msg = mv[:16] == PUSHER_MESSAGE
            if not is_msg:
                self._pusher_control(transport, frame.get_payload_as_bytes())
                return
        else:
            mv = frame.get_payload_as_memoryview()
            is_msg = mv[:2] == b"42"
            if not is_msg:
                self._socketio_control(transport, frame.get_payload_as_bytes())
                return
        s = self.stats
        s.messages += 1
        self.messages += 1
        s.last_frame = now = time.monotonic()
        if self.messages == self.target:
            self.done_at = now
        if s.messages % s.sample_every == 0:
            s.sample(frame.get_payload_as_bytes())

    def _pushwire_control(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(b'{"type":"welcome"'):
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload.startswith(PING):
            transport.send(TEXT, PONG)
        if self.keep_control:
            self.frames.append(payload)

    def _pusher_control(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(b'{"event":"pusher:ping"'):
            transport.send(TEXT, PUSHER_PONG)
        elif payload.startswith(b'{"event":"pusher:connection_established"'):
            transport.send(TEXT, PUSHER_SUBSCRIBE)
        elif payload.startswith(b'{"event":"pusher_internal:subscription_succeeded","channel":"bench"'):
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload.startswith((b'{"event":"pusher:error"', b'{"event":"pusher:subscription_error"')):
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"pusher refused: {payload[:120]!r}"))
        if self.keep_control:
            self.frames.append(payload)

    def _socketio_control(self, transport: WSTransport, payload: bytes) -> None:
        if payload[:1] == b"0":
            transport.send(TEXT, b"40")
        elif payload[:2] == b"40":
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload == b"2":
            transport.send(TEXT, b"3")
        elif payload[:2] == b"44" and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"socket.io connect refused: {payload[:80]!r}"))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.stats.closes["disconnected"] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("disconnected before the greeting"))

    def send(self, text: str | bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(TEXT, text.encode() if isinstance(text, str) else text)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()


async def connect(url: str, stats: Stats, dialect: str, timeout: float = 30.0) -> Client:
    _, client = await ws_connect(
        lambda: Client(stats, dialect), url, websocket_handshake_timeout=timeout, enable_auto_pong=True
    )
    await asyncio.wait_for(client.ready, timeout)
    return client  # type: ignore[return-value]


class Fleet:
    """N clients; `url_for(i)` gives client i's URL. `grow(n)` raises if fewer than 99 % connect."""

    def __init__(self, url_for: Callable[[int], str], dialect: str, stats: Stats | None = None) -> None:
        self.url_for = url_for
        self.dialect = dialect
        self.stats = stats or Stats()
        self.clients: list[Client] = []
        self.failed: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self.clients)

    async def grow(self, total: int, concurrency: int = 100) -> float:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                try:
                    self.clients.append(await connect(self.url_for(i), self.stats, self.dialect))
                except Exception as exc:
                    self.failed[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

        await asyncio.gather(*(one(i) for i in range(len(self.clients), total)))
        took = time.monotonic() - t0
        if len(self.clients) < 0.99 * total:
            raise RuntimeError(
                f"only {len(self.clients):,} of {total:,} {self.dialect} clients connected "
                f"(failures: {dict(self.failed)})"
            )
        return took

    async def keepalive(self, every: float = 20.0) -> None:
        """Pushwire closes clients that sent nothing for 2 × heartbeat: send the dialect's ping
        (`{"type":"ping"}`, `pusher:ping`), spread evenly."""
        ping = KEEPALIVE_PING[self.dialect]
        i = 0
        while True:
            await asyncio.sleep(0.5)
            n = len(self.clients)
            for _ in range(max(1, int(n * 0.5 / every)) if n else 0):
                self.clients[i % n].send(ping)
                i += 1

    def live(self) -> int:
        return sum(1 for c in self.clients if c.transport is not None and not c.transport.is_disconnected)

    async def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients = []
        await asyncio.sleep(0.2)


def payload(seq: int) -> str:
    """~100 bytes of JSON with the send time `t` (s since the epoch)."""
    return f'{{"t":{time.time():.6f},"s":{seq},"p":"{"x" * 60}"}}'


class ControlPublisher:
    """Paced publishing to a peer server over one control connection: `"<n>|<payload>"` per ≤ 100 messages."""

    def __init__(self, ctl: Client, socketio: bool) -> None:
        self.ctl = ctl
        self.socketio = socketio
        self.seq = 0

    def _send(self, k: int) -> None:
        text = f"{k}|{payload(self.seq)}"
        self.seq += k
        self.ctl.send(f'42["pub",{json.dumps(text)}]' if self.socketio else text)

    async def burst(self, k: int) -> None:
        self._send(k)

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        return await paced(rate, seconds, self._send)


async def paced(rate: float, seconds: float, send: Callable[[int], Any]) -> dict[str, Any]:
    """Call `send(k)` (k ≤ 100) every `TICK` s so that `rate` messages/s go out for `seconds`."""
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * seconds))
    sent = 0
    start = loop.time()
    while sent < total and loop.time() - start < seconds:
        due = min(int(rate * (loop.time() - start)) + 1, total) - sent
        while due > 0:
            k = min(100, due)
            r = send(k)
            if asyncio.iscoroutine(r):
                await r
            sent += k
            due -= k
        await asyncio.sleep(TICK)
    took = max(loop.time() - start, seconds)
    if loop.time() - start < seconds:  # everything went out early (low rates): the window still lasts `seconds`
        await asyncio.sleep(start + seconds - loop.time())
    return {
        "wanted": total,
        "sent": sent,
        "accepted": sent,
        "publish_seconds": round(took, 2),
        "publish_rate": round(sent / took, 1),
        "errors": {},
    }
