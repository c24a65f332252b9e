"""Realtime client for end users: WebSocket first, long-poll where WebSockets are blocked.

    client = RealtimeClient("https://push.example.com", token, channels=["room.lobby"])
    await client.start()
    async for message in client.messages():
        ...
        await client.ack(message["channel"], message["offset"])

The server delivers each channel in order and at least once across reconnects. This client
remembers the last (epoch, offset) it delivered per channel, resumes rooms with `since` after
a reconnect and drops anything at or below that position, so the application sees each
message once. A loss the server cannot fill arrives as `subscribed` with `recovered: false`;
it is reported through `on_gap` and `gaps`, never hidden (docs/client-protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, InvalidStatus

log = logging.getLogger(__name__)

Frame = dict[str, Any]
TokenSource = str | Callable[[], Awaitable[str]]
MessageHandler = Callable[[Frame], Awaitable[None] | None]
GapHandler = Callable[[str, Frame], Awaitable[None] | None]
TransportName = Literal["ws", "longpoll"]
# How a connection ended, which decides the wait before the next one.
Outcome = Literal["prompt", "backoff", "long", "auth", "fallback", "upgrade"]

BROADCAST = "broadcast"
STABLE_AFTER = 10.0  # a connection that lasted this long resets the backoff
WS_RETRY_AFTER = 300.0  # on long-poll after a fallback, try the WebSocket again this often
DEFAULT_HEARTBEAT = 25.0
_PROMPT_CODES = {4003, 4008, 4500}  # the server wants us back (elsewhere) and resuming with since


class RealtimeError(Exception):
    """The client cannot go on, or a request was refused (forbidden room, Origin not allowed)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _Ended(Exception):
    def __init__(self, outcome: Outcome, why: str = "") -> None:
        super().__init__(why or outcome)
        self.outcome = outcome


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


def close_outcome(code: int | None) -> Outcome:
    """What a WebSocket close code asks of the client (docs/client-protocol.md, close codes)."""
    if code == 4001:
        return "auth"
    if code in _PROMPT_CODES:
        return "prompt"
    if code == 4004:
        return "long"
    return "backoff"  # 4002, 1009, abnormal closures, anything unknown


class RealtimeClient:
    """One end user's connection, kept up across drops, instances and transports.

    `token` is a client token, or an async callable returning one (called again after the
    server refused the current one). Messages go to `on_message` when given (sync or async),
    else to `messages()`. `on_gap(channel, subscribed_frame)` reports a loss the server could
    not fill. An exception raised by a callback stops the client; `messages()` re-raises it.
    """

    WS_PATH = "/api/v1/ws"
    LONGPOLL_PATH = "/api/v1/longpoll"
    ACK_PATH = "/api/v1/ack"

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        transports: Sequence[TransportName] = ("ws", "longpoll"),
        channels: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        on_gap: GapHandler | None = None,
        backoff_min: float = 0.2,
        backoff_max: float = 10.0,
        poll_timeout: int = 25,
        queue_size: int = 1000,
        max_frame: int = 16 * 1024 * 1024,
    ) -> None:
        if not transports or set(transports) - {"ws", "longpoll"}:
            raise ValueError('transports must be a non-empty subset of ("ws", "longpoll")')
        self.base_url = base_url.rstrip("/")
        self.transports = tuple(transports)
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.poll_timeout = poll_timeout
        self.max_frame = max_frame
        self.gaps: list[Frame] = []  # subscribed frames with recovered: false that lost messages
        self.duplicates = 0  # (channel, offset) dropped because already delivered
        self.connects = 0
        self._token_source = token
        self._token: str | None = None
        self._on_message = on_message
        self._on_gap = on_gap
        self._rooms: dict[str, None] = dict.fromkeys(channels)  # an ordered set
        self._positions: dict[str, tuple[str, int]] = {}  # channel -> last delivered (epoch, offset)
        self._recovered: dict[str, Frame] = {}  # channel -> last subscribed frame
        self._pending: dict[str, asyncio.Future[Frame]] = {}  # subscribe() calls awaiting an answer
        self._pending_acks: dict[str, int] = {}
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(queue_size)
        self._use_ws = self.transports[0] == "ws"
        self._transport: TransportName | None = None
        self._welcome: Frame | None = None
        self._personal: str | None = None
        self._heartbeat = DEFAULT_HEARTBEAT
        self._ws: ClientConnection | None = None
        self._awaiting: dict[str, int] = {}  # WS subscribes sent but not answered, per channel
        self._retried: set[str] = set()
        self._dead = False
        self._last_rx = self._last_tx = self._last_ping = 0.0
        self._reading = False
        self._cursor: str | None = None
        self._repoll = asyncio.Event()
        self._fell_back_at: float | None = None
        self._connected_at: float | None = None
        self._http: httpx.AsyncClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._error: BaseException | None = None

    # -- public API -----------------------------------------------------------
    @property
    def transport(self) -> TransportName | None:
        return self._transport

    @property
    def welcome(self) -> Frame | None:
        return self._welcome

    @property
    def recovered(self) -> dict[str, Frame]:
        """The last `subscribed` frame per channel (its `recovered`, `replayed`, `offset`)."""
        return dict(self._recovered)

    @property
    def positions(self) -> dict[str, tuple[str, int]]:
        return dict(self._positions)

    @property
    def channels(self) -> list[str]:
        return list(self._rooms)

    async def start(self) -> None:
        """Connect; returns once the first connection is up (welcome received or first poll answered).

        Keeps reconnecting on its own afterwards. Bound the wait with asyncio.timeout if needed.
        """
        if self._stopped.is_set():
            raise self._error or RealtimeError("the client is closed")
        if self._runner is None:
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.poll_timeout + 15)
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="pushwire-realtime")
            self._runner.add_done_callback(self._runner_done)
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._ready.is_set():
            raise self._error or RealtimeError("the client stopped")

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self._transport = None
        self._fail_pending(RealtimeError("the client is closed"))
        self._stopped.set()

    async def __aenter__(self) -> RealtimeClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def messages(self) -> AsyncIterator[Frame]:
        """Message frames in delivery order; ends after close(), raises if the client failed.

        Used when no `on_message` was given. The queue is bounded: a consumer that falls behind
        stops the reader, the server then closes the socket (4008) and the client resumes with since.
        """
        while True:
            try:
                yield self._queue.get_nowait()
                continue
            except asyncio.QueueEmpty:
                pass
            if self._stopped.is_set():
                if self._error is not None:
                    raise self._error
                return
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not getter.done():
                    getter.cancel()  # not done means it has not taken an item
            if getter.done() and not getter.cancelled():
                yield getter.result()

    async def subscribe(self, channel: str) -> Frame | None:
        """Add a room; returns its `subscribed` frame once the server answered.

        Before start() it is only recorded. Raises RealtimeError if the token does not allow it.
        """
        if channel in (BROADCAST, self._personal):
            return None  # always subscribed
        known = channel in self._rooms
        if known and channel in self._recovered:
            return self._recovered[channel]
        if self._stopped.is_set():
            raise self._error or RealtimeError("the client is closed")
        self._rooms[channel] = None
        if self._runner is None:
            return None
        future = self._pending.get(channel)
        if future is None:
            future = self._pending[channel] = asyncio.get_running_loop().create_future()
        if known:
            pass  # already asked, or asked on the next connect
        elif self._transport == "ws":
            await self._send_subscribe(channel)
        else:
            self._repoll.set()  # the poll in flight does not carry the new room: ask again at once
        return await asyncio.shield(future)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._rooms:
            return
        del self._rooms[channel]
        # A later subscribe starts fresh: what was skipped on purpose is not replayed.
        self._positions.pop(channel, None)
        self._recovered.pop(channel, None)
        self._awaiting.pop(channel, None)
        self._settle(channel, RealtimeError(f"unsubscribed from {channel}"))
        if self._transport == "ws":
            await self._send({"type": "unsubscribe", "channel": channel})
        elif self._transport == "longpoll":
            self._repoll.set()

    async def ack(self, channel: str, offset: int) -> int | None:
        """Acknowledge (cumulatively) up to `offset`; returns the stored offset when the server says it.

        Over WebSocket the server does not answer the sender; while disconnected the ack is kept
        and sent after the next connect.
        """
        if self._transport == "ws" and await self._send({"type": "ack", "channel": channel, "offset": offset}):
            return None
        if self._transport == "longpoll" and self._http is not None:
            return await self._post_ack(channel, offset)
        self._pending_acks[channel] = max(offset, self._pending_acks.get(channel, 0))
        return None

    # -- the connection loop --------------------------------------------------
    def _runner_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._error = error
            self._fail_pending(error)
        self._transport = None
        self._stopped.set()

    def _settle(self, channel: str, result: Frame | BaseException) -> None:
        """Answer a subscribe() caller, if one is waiting for this channel."""
        future = self._pending.pop(channel, None)
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
            future.exception()  # the caller may have given up: do not warn about it
        else:
            future.set_result(result)

    def _fail_pending(self, exc: BaseException) -> None:
        for channel in list(self._pending):
            self._settle(channel, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            self._connected_at = None
            try:
                if self._use_ws:
                    await self._run_ws()
                else:
                    await self._run_longpoll()
                outcome: Outcome = "backoff"
            except _Ended as end:
                outcome = end.outcome
                log.debug("realtime connection ended: %s", end)
            except (OSError, httpx.TransportError, TimeoutError, InvalidHandshake, ValueError, KeyError) as exc:
                # network trouble, an unreadable answer: the same transport again, later
                outcome = "backoff"
                log.debug("realtime connection failed: %r", exc)
            finally:
                self._transport = None
                self._ws = None
                self._awaiting.clear()
            if self._connected_at is not None and loop.time() - self._connected_at > STABLE_AFTER:
                attempt = 0
            if outcome == "prompt" and self._connected_at is None:
                outcome = "backoff"  # closed before it ever worked: not a hand-over, back off
            if outcome == "auth":
                if not callable(self._token_source):
                    raise RealtimeError("the token was refused and cannot be renewed", 401, "unauthorized")
                self._token = None  # ask the callable for a new one before retrying
            elif outcome == "fallback":
                if "longpoll" in self.transports:
                    self._use_ws = False
                    self._fell_back_at = loop.time()
                    continue
                outcome = "backoff"
            elif outcome == "upgrade":
                self._use_ws = True
                continue
            await asyncio.sleep(self._delay(outcome, attempt))
            attempt += 1

    def _delay(self, outcome: Outcome, attempt: int) -> float:
        """Full jitter, so clients dropped together (a server restart) do not return together."""
        cap = min(self.backoff_max, self.backoff_min * 2 ** min(attempt, 30))
        if outcome == "prompt":  # from 0: right after a stable connection that is at most backoff_min
            return random.uniform(0, cap)
        if outcome == "long":  # a connection limit: seconds to minutes
            return random.uniform(self.backoff_max / 2, self.backoff_max)
        return random.uniform(self.backoff_min, cap)

    async def _get_token(self) -> str:
        if self._token is None:
            source = self._token_source
            self._token = source if isinstance(source, str) else await source()
        return self._token

    def _connected(self, transport: TransportName) -> None:
        self._transport = transport
        self._connected_at = asyncio.get_running_loop().time()
        self.connects += 1
        self._ready.set()

    # -- WebSocket ------------------------------------------------------------
    async def _run_ws(self) -> None:
        url = self._ws_url(await self._get_token())
        try:
            # compression off: small JSON frames gain little and deflate state costs memory.
            # Liveness is the protocol's JSON ping/pong, so the library's pings are off.
            ws = await connect(url, compression=None, max_size=self.max_frame, ping_interval=None, close_timeout=2)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise _Ended("auth", "401 at upgrade") from None
            if status == 403 and b"origin_not_allowed" in (exc.response.body or b""):
                raise RealtimeError("the server refused this client's Origin", 403, "origin_not_allowed") from None
            if status == 503:
                raise _Ended("backoff", "503: instance draining") from None  # another instance will take us
            # Anything else (404, 426, a proxy's 403 or 502): WebSockets do not get through.
            raise _Ended("fallback", f"HTTP {status} at upgrade") from None
        except InvalidMessage:
            raise  # the connection broke during the handshake: network, not a blocked WebSocket
        except InvalidHandshake as exc:
            raise _Ended("fallback", f"no WebSocket here: {exc}") from None
        self._ws = ws
        self._awaiting.clear()
        self._retried.clear()
        self._dead = False
        self._last_rx = self._last_tx = asyncio.get_running_loop().time()
        beat = asyncio.get_running_loop().create_task(self._ws_heartbeat(ws))
        try:
            while True:
                self._reading = True
                try:
                    raw = await ws.recv()
                except ConnectionClosed as exc:
                    if self._dead:
                        raise _Ended("prompt", "server silent for 2 x heartbeat") from None
                    code = exc.rcvd.code if exc.rcvd is not None else None
                    raise _Ended(close_outcome(code), f"closed {code}") from None
                finally:
                    self._reading = False
                self._last_rx = asyncio.get_running_loop().time()
                frame = json.loads(raw)
                if isinstance(frame, dict):
                    await self._handle_frame(frame)
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()

    def _ws_url(self, token: str) -> str:
        base = "ws" + self.base_url[len("http") :] if self.base_url.startswith("http") else self.base_url
        return f"{base}{self.WS_PATH}?token={quote(token, safe='')}"

    async def _ws_heartbeat(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            beat = self._heartbeat
            # At most 1 s: the first sleep starts before the welcome tells the real heartbeat.
            await asyncio.sleep(min(1.0, max(0.05, beat / 4)))
            now = loop.time()
            if self._reading and now - self._last_rx > 2 * beat:
                self._dead = True  # a half-open connection: give up on it
                await ws.close(1000, "server silent")
                return
            # Ping when the server went quiet, and also when we were: a client that only
            # answers pings is silent while the server streams, and would be closed with 4003.
            quiet_server = now - self._last_rx >= beat and self._last_ping <= self._last_rx
            if quiet_server or now - self._last_tx >= beat:
                self._last_ping = now
                await self._send({"type": "ping"})

    async def _send(self, frame: Frame) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed:
            return False
        self._last_tx = asyncio.get_running_loop().time()
        return True

    async def _send_subscribe(self, channel: str) -> None:
        frame: Frame = {"type": "subscribe", "channel": channel}
        position = self._positions.get(channel)
        if position is not None:
            frame["since"] = {"epoch": position[0], "offset": position[1]}
        # Until its answer, this channel's messages belong to the old subscription; the
        # replay after the answer resends them in order, so they are dropped meanwhile.
        self._awaiting[channel] = self._awaiting.get(channel, 0) + 1
        if not await self._send(frame):
            self._awaiting.pop(channel, None)

    async def _after_welcome(self) -> None:
        """Resume: rooms with since, broadcast if it moved while we were away, then pending acks."""
        assert self._welcome is not None
        top = self._welcome.get("channels", {}).get(BROADCAST)
        mine = self._positions.get(BROADCAST)
        if top is not None and mine is not None and mine != (top["epoch"], top["offset"]):
            await self._send_subscribe(BROADCAST)
        # Connected first, so a subscribe() from now on sends its own frame.
        self._connected("ws")
        for room in list(self._rooms):
            await self._send_subscribe(room)
        acks, self._pending_acks = self._pending_acks, {}
        for channel, offset in acks.items():
            await self._send({"type": "ack", "channel": channel, "offset": offset})

    # -- frames (every transport) ---------------------------------------------
    async def _handle_frame(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "message":
            await self._deliver(frame)
        elif kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "welcome":
            self._on_welcome(frame)
            if self._ws is not None:
                await self._after_welcome()
        elif kind == "subscribed":
            await self._on_subscribed(frame)
        elif kind == "error":
            await self._on_error(frame)
        # pong, unsubscribed, read: nothing to do

    def _on_welcome(self, frame: Frame) -> None:
        self._welcome = frame
        self._personal = f"user.{frame['user']}"
        self._heartbeat = float(frame.get("heartbeat") or DEFAULT_HEARTBEAT)
        top = frame.get("channels", {}).get(BROADCAST)
        if top is not None and BROADCAST not in self._positions:
            # Broadcast starts live at its top. The personal channel gets no such baseline:
            # its unread messages follow the welcome and must not look like duplicates.
            self._positions[BROADCAST] = (top["epoch"], top["offset"])

    async def _deliver(self, frame: Frame) -> None:
        channel, epoch, offset = frame.get("channel"), frame.get("epoch"), frame.get("offset")
        if not isinstance(channel, str) or not isinstance(offset, int) or not isinstance(epoch, str):
            return
        if self._awaiting.get(channel):
            return
        if channel not in self._rooms and channel != BROADCAST and self._personal not in (None, channel):
            return  # in flight when we unsubscribed
        position = self._positions.get(channel)
        if position is not None and position[0] == epoch and offset <= position[1]:
            self.duplicates += 1
            return
        self._positions[channel] = (epoch, offset)
        if self._on_message is not None:
            await _call(self._on_message, frame)
        else:
            await self._queue.put(frame)

    def _lost(self, channel: str, frame: Frame) -> bool:
        """Did this recovered: false frame skip messages this client had not delivered?"""
        position = self._positions.get(channel)
        if position is None:
            # Nothing delivered yet: only the personal channel had something owed (unread).
            return channel == self._personal
        return position[0] != frame.get("epoch") or position[1] < frame.get("offset", 0)

    async def _on_subscribed(self, frame: Frame) -> None:
        channel = frame.get("channel")
        if not isinstance(channel, str):
            return
        asked = self._awaiting.get(channel, 0)
        if asked:
            if asked == 1:
                del self._awaiting[channel]
            else:
                self._awaiting[channel] = asked - 1
        if not frame.get("recovered") and self._lost(channel, frame):
            position = self._positions.get(channel)
            if (
                not asked
                and self._ws is not None
                and channel not in self._retried
                and position is not None
                and position[0] == frame.get("epoch")
            ):
                # Unasked (unread compensation from the acked offset, a live hole the server could
                # not fill): our own position may still be recoverable, so ask once with since.
                self._retried.add(channel)
                await self._send_subscribe(channel)
                return
            self.gaps.append(frame)
            if self._on_gap is not None:
                await _call(self._on_gap, channel, frame)
        self._retried.discard(channel)
        if not frame.get("recovered"):
            # Live continues after the top; re-basing also un-drops offsets of a new epoch.
            self._positions[channel] = (str(frame.get("epoch")), int(frame.get("offset", 0)))
        if asked > 1:
            return  # a later subscribe of the same channel answers the caller
        self._recovered[channel] = frame
        self._settle(channel, frame)

    async def _on_error(self, frame: Frame) -> None:
        channel = frame.get("channel")
        code = frame.get("code")
        if not isinstance(channel, str):
            log.warning("realtime error from the server: %s %s", code, frame.get("message"))
            return
        self._awaiting.pop(channel, None)
        if code == "forbidden":
            self._rooms.pop(channel, None)
            log.warning("the token does not allow %s: not subscribed", channel)
            self._settle(channel, RealtimeError(f"the token does not allow {channel}", 403, "forbidden"))
        elif self._ws is not None:
            # A backend hiccup on subscribe: reconnecting re-subscribes everything with since.
            await self._ws.close(1000, "resubscribe")

    # -- long-poll ------------------------------------------------------------
    async def _run_longpoll(self) -> None:
        assert self._http is not None
        loop = asyncio.get_running_loop()
        while True:
            if (
                self._fell_back_at is not None
                and "ws" in self.transports
                and loop.time() - self._fell_back_at > WS_RETRY_AFTER
            ):
                self._fell_back_at = None
                raise _Ended("upgrade", "trying the WebSocket again")
            self._repoll.clear()
            rooms = list(self._rooms)
            params: list[tuple[str, str | int | float | bool | None]] = [("channel", room) for room in rooms]
            params.append(("timeout", str(self.poll_timeout)))
            if self._cursor:
                params.append(("cursor", self._cursor))
            headers = {"Authorization": f"Bearer {await self._get_token()}"}
            request = asyncio.ensure_future(self._http.get(self.LONGPOLL_PATH, params=params, headers=headers))
            repoll = asyncio.ensure_future(self._repoll.wait())
            try:
                await asyncio.wait({request, repoll}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                repoll.cancel()
                if not request.done():
                    # The cursor is stateless: an abandoned poll loses nothing, the next one
                    # answers from the same cursor.
                    request.cancel()
                    await asyncio.gather(request, return_exceptions=True)
            if request.cancelled():
                continue
            response = request.result()
            if not await self._poll_answer(response, rooms):
                continue
            if self._transport is None:
                acks, self._pending_acks = self._pending_acks, {}
                self._connected("longpoll")
                for channel, offset in acks.items():
                    with contextlib.suppress(RealtimeError, httpx.HTTPError):
                        await self._post_ack(channel, offset)

    async def _poll_answer(self, response: httpx.Response, rooms: list[str]) -> bool:
        status = response.status_code
        body = response.json() if response.content else {}
        error = body.get("error") if isinstance(body, dict) else None
        if status == 401:
            raise _Ended("auth", "401 on long-poll")
        if status == 400 and error == "invalid_cursor":
            self._cursor = None  # start over: welcome, unread, rooms at their tops (gaps reported)
            return False
        if status in (403, 422) and error != "origin_not_allowed":
            # The poll names every room, so one refused room refuses the poll. Rooms the server
            # never confirmed are the suspects: drop them, tell their subscribe() callers.
            refused = [room for room in rooms if room not in self._recovered]
            if not refused:
                raise RealtimeError(f"long-poll refused: {body.get('message')}", status, error)
            for room in refused:
                self._rooms.pop(room, None)
                log.warning("long-poll refused %s: %s", room, body.get("message"))
                self._settle(room, RealtimeError(f"cannot subscribe to {room}: {body.get('message')}", status, error))
            return False
        if status == 403:
            raise RealtimeError("the server refused this client's Origin", 403, error)
        if status >= 400:
            raise _Ended("backoff", f"long-poll HTTP {status}")
        if body.get("welcome"):
            self._on_welcome(body["welcome"])
        for sub in body.get("subscribed") or []:
            await self._on_subscribed({"type": "subscribed", **sub})
        for message in body.get("messages") or []:
            await self._deliver(message)
        self._cursor = body["cursor"]
        # A room already in the cursor gets no subscribed entry: its subscribe() is answered now.
        for room in rooms:
            self._settle(room, self._recovered.get(room, {"type": "subscribed", "channel": room}))
        return True

    async def _post_ack(self, channel: str, offset: int) -> int:
        assert self._http is not None
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {await self._get_token()}"}
            response = await self._http.post(
                self.ACK_PATH, json={"channel": channel, "offset": offset}, headers=headers
            )
            if response.status_code == 401 and attempt == 0 and callable(self._token_source):
                self._token = None
                continue
            body = response.json() if response.content else {}
            if response.status_code != 200:
                raise RealtimeError(f"ack refused: {body.get('message')}", response.status_code, body.get("error"))
            return int(body["offset"])
        raise RealtimeError("ack refused: token", 401, "unauthorized")
