"""Drivers for the real Pusher libraries, used by the tests in this package.

- `PusherJs`: the unmodified pusher-js 8 (npm, its Node build) in a node process
  (clients/pusher_js_client.mjs): JSON commands in on stdin, everything the library reports out as JSON lines.
- `NodeServerSdk`: the unmodified `pusher` server SDK (npm) in a node process (clients/pusher_server.mjs).
- `PysherClient`: the unmodified Pysher (PyPI, protocol 6) in its own threads, its callbacks collected.
- `PyServerSdk`: the unmodified `pusher` server SDK (PyPI), its blocking calls run in a thread.

Every wait has a timeout; a wait that times out fails with the lines the driver saw, so a failure shows
the frames exchanged rather than hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self
from unittest import mock

import pusher as pusher_sdk  # type: ignore[import-untyped]
import pusher.http as pusher_http  # type: ignore[import-untyped]
import pysher  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_MODULES = REPO / "node_modules"
TIMEOUT = 10.0

Line = dict[str, Any]
Match = Callable[[Line], bool]


@dataclass(frozen=True)
class PusherApp:
    """What a tenant configures the Pusher libraries with: our app id, a server key id and its secret."""

    app_id: str
    key: str
    secret: str
    host: str
    port: int

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "appId": self.app_id,
            "key": self.key,
            "secret": self.secret,
            "host": self.host,
            "port": self.port,
            **extra,
        }


def node() -> str:
    found = shutil.which("node")
    assert found, "node is not on PATH (Node 20 runs the real pusher-js and `pusher` npm packages)"
    for package in ("pusher-js", "pusher"):
        assert (NODE_MODULES / package / "package.json").exists(), (
            f"node_modules/{package} is missing: `make install` (npm install) fetches it from package.json"
        )
    return found


def _show(lines: list[Line], last: int = 60) -> str:
    shown = [json.dumps(line, sort_keys=True)[:600] for line in lines[-last:]]
    return "\n".join(shown) or "(nothing)"


class NodeProcess:
    """A node script as an asyncio subprocess that writes JSON lines; all of them are kept."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[Line] = []
        self.stderr: list[str] = []
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(cls, name: str, script: str, config: dict[str, Any]) -> Self:
        proc = await asyncio.create_subprocess_exec(
            node(),
            str(CLIENTS / script),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        return cls(name, proc)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout
        while line := await self.proc.stdout.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"type": "raw", "text": line.decode(errors="replace")})
            self._changed.set()
        self.lines.append({"type": "exited"})
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr
        while line := await self.proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin and self.proc.returncode is None, f"{self.name} has exited\n{self.report()}"
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    def seen(self, match: Match, start: int = 0) -> list[Line]:
        return [line for line in self.lines[start:] if match(line)]

    def mark(self) -> int:
        return len(self.lines)

    async def find(self, match: Match, what: str, timeout: float = TIMEOUT, start: int = 0) -> Line:
        """The first line (from index `start`) that matches, waiting for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                if match(line):
                    return line
            start = max(start, len(self.lines))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {what} within {timeout} s; it saw:\n{self.report()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def gather(self, match: Match, n: int, what: str, timeout: float = TIMEOUT, start: int = 0) -> list[Line]:
        """Waits until `n` lines match; returns them (all that matched, in order)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.seen(match, start)
            if len(found) >= n:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: {len(found)} of {n} {what} within {timeout} s; it saw:\n{self.report()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def report(self) -> str:
        err = "\n".join(self.stderr[-20:])
        return _show(self.lines) + (f"\n--- stderr ---\n{err}" if err else "")

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin
                self.proc.stdin.close()
            try:
                async with asyncio.timeout(3):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


def is_event(channel: str, event: str) -> Match:
    return lambda line: line["type"] == "event" and line["channel"] == channel and line["event"] == event


class PusherJs(NodeProcess):
    """pusher-js 8 in node. Channel and user auth are signed in the driver by the `pusher` npm SDK."""

    _ids = itertools.count(1)

    async def connected(self, timeout: float = TIMEOUT) -> str:
        line = await self.find(
            lambda x: x["type"] == "state" and x["current"] == "connected", "connected state", timeout
        )
        socket_id = line["socket_id"]
        assert isinstance(socket_id, str)
        return socket_id

    @property
    def socket_id(self) -> str:
        states = self.seen(lambda x: x["type"] == "state" and x["current"] == "connected")
        assert states, f"{self.name} never connected\n{self.report()}"
        return str(states[-1]["socket_id"])

    async def command(self, op: str, timeout: float = TIMEOUT, **args: Any) -> Line:
        """A command that answers with a `reply` line (trigger, members, state)."""
        command_id = next(self._ids)
        await self.send({"op": op, "id": command_id, **args})
        reply = await self.find(lambda x: x["type"] == "reply" and x["id"] == command_id, f"reply to {op}", timeout)
        assert "error" not in reply, f"{self.name}: {op} failed: {reply['error']}\n{self.report()}"
        return reply

    async def subscribe(self, channel: str, timeout: float = TIMEOUT) -> Any:
        """Subscribes and returns what `pusher:subscription_succeeded` carried (the members on presence)."""
        return await self._subscription(channel, "pusher:subscription_succeeded", timeout)

    async def subscribe_error(self, channel: str, timeout: float = TIMEOUT) -> Any:
        """Subscribes expecting a refusal; returns the pusher:subscription_error data."""
        return await self._subscription(channel, "pusher:subscription_error", timeout)

    async def _subscription(self, channel: str, expected: str, timeout: float) -> Any:
        start = self.mark()
        await self.send({"op": "subscribe", "channel": channel})
        line = await self.find(
            lambda x: (
                x["type"] == "event"
                and x["channel"] == channel
                and x["event"] in ("pusher:subscription_succeeded", "pusher:subscription_error")
            ),
            f"subscription result on {channel}",
            timeout,
            start,
        )
        assert line["event"] == expected, f"{self.name}: subscribing {channel} gave {line}\n{self.report()}"
        return line["data"]

    async def unsubscribe(self, channel: str) -> None:
        await self.send({"op": "unsubscribe", "channel": channel})

    async def trigger(self, channel: str, event: str, data: Any) -> bool:
        return bool((await self.command("trigger", channel=channel, event=event, data=data))["ok"])

    async def event(self, channel: str, event: str, timeout: float = TIMEOUT, start: int = 0) -> Line:
        return await self.find(is_event(channel, event), f"{event!r} on {channel}", timeout, start)

    async def events(self, channel: str, event: str, n: int, timeout: float = TIMEOUT, start: int = 0) -> list[Any]:
        """The data of the first `n` (or more) such events, in arrival order."""
        lines = await self.gather(is_event(channel, event), n, f"{event!r} events on {channel}", timeout, start)
        return [line["data"] for line in lines]

    def data_of(self, channel: str, event: str, start: int = 0) -> list[Any]:
        return [line["data"] for line in self.seen(is_event(channel, event), start)]

    async def frame(self, event: str, channel: str | None = None, timeout: float = TIMEOUT, start: int = 0) -> Line:
        """A frame as the connection received it (`message` line: data decoded, `user_id` kept)."""
        return await self.find(
            lambda x: x["type"] == "message" and x["event"] == event and (channel is None or x["channel"] == channel),
            f"{event!r} frame" + (f" on {channel}" if channel else ""),
            timeout,
            start,
        )

    def frames(self, event: str, start: int = 0) -> list[Line]:
        return self.seen(lambda x: x["type"] == "message" and x["event"] == event, start)

    async def error(self, timeout: float = TIMEOUT) -> Line:
        return await self.find(lambda x: x["type"] == "error", "connection error", timeout)

    async def state(self) -> str:
        return str((await self.command("state"))["state"])

    async def disconnect(self) -> None:
        await self.send({"op": "disconnect"})


class NodeServerSdk(NodeProcess):
    """The `pusher` npm SDK in node: each call answers {status, body} or {status, body, error}."""

    _ids = itertools.count(1)

    async def call(self, op: str, timeout: float = TIMEOUT, signer: dict[str, str] | None = None, **args: Any) -> Line:
        """`signer` overrides the SDK's credentials for this call ({appId?, key?, secret?})."""
        command_id = next(self._ids)
        await self.send({"op": op, "id": command_id, **args, **({"as": signer} if signer else {})})
        return await self.find(lambda x: x.get("id") == command_id, f"answer to {op}", timeout)

    async def ok(self, op: str, **args: Any) -> Any:
        """A call that must succeed with 200: its body."""
        answer = await self.call(op, **args)
        assert answer.get("status") == 200 and "error" not in answer, f"{op} {args}: {answer}"
        return answer["body"]

    async def trigger(self, channels: list[str] | str, event: str, data: Any, **params: Any) -> Line:
        return await self.call("trigger", channels=channels, event=event, data=data, params=params or None)

    async def get(self, path: str, **params: Any) -> Line:
        return await self.call("get", path=path, params=params or None)


class PysherClient:
    """Pysher (protocol 6) against a live server: its threads run the socket; callbacks land in `events`.

    Pysher has no catch-all handler, so each channel binds the names a test asks for, next to the
    protocol's own (subscription results, members, cache misses).
    """

    CHANNEL_EVENTS = (
        "pusher_internal:subscription_succeeded",
        "pusher:subscription_error",
        "pusher_internal:member_added",
        "pusher_internal:member_removed",
        "pusher:cache_miss",
    )

    def __init__(self, app: PusherApp, user_data: dict[str, Any] | None = None, secret: str | None = None) -> None:
        self.events: list[tuple[str | None, str, Any]] = []
        self._lock = threading.Lock()
        self.client = pysher.Pusher(
            app.key,
            custom_host=app.host,
            port=app.port,
            secure=False,
            secret=app.secret if secret is None else secret,
            user_data=user_data,
            log_level=logging.WARNING,
            reconnect_interval=1,
        )
        for name in ("pusher:connection_established", "pusher:error", "pusher:pong"):
            self.client.connection.bind(name, self._record, None, name)

    def _record(self, data: Any, channel: str | None, event: str) -> None:
        with self._lock:
            self.events.append((channel, event, data))

    def seen(self, channel: str | None, event: str) -> list[Any]:
        with self._lock:
            return [d for c, e, d in self.events if c == channel and e == event]

    async def wait(self, channel: str | None, event: str, n: int = 1, timeout: float = TIMEOUT) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(found := self.seen(channel, event)) < n:
            if time.monotonic() > deadline:
                with self._lock:
                    saw = "\n".join(repr(e) for e in self.events[-40:])
                raise AssertionError(f"pysher: {len(found)} of {n} {event!r} on {channel} in {timeout} s; saw:\n{saw}")
            await asyncio.sleep(0.02)
        return found

    async def connect(self, timeout: float = TIMEOUT) -> str:
        self.client.connect()
        [data] = await self.wait(None, "pusher:connection_established", timeout=timeout)
        socket_id = json.loads(data)["socket_id"] if isinstance(data, str) else data["socket_id"]
        # Pysher reads the socket id in its own handler, which may run just after ours.
        deadline = time.monotonic() + timeout
        while self.client.connection.socket_id != socket_id and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return str(socket_id)

    def subscribe(self, channel: str, events: tuple[str, ...] = (), auth: str | None = None) -> Any:
        ch = self.client.subscribe(channel, auth=auth)
        for name in (*self.CHANNEL_EVENTS, *events):
            ch.bind(name, self._record, channel, name)
        return ch

    async def subscribed(self, channel: str, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if errors := self.seen(channel, "pusher:subscription_error"):
                raise AssertionError(f"pysher: subscribing {channel} failed: {errors[0]}")
            if done := self.seen(channel, "pusher_internal:subscription_succeeded"):
                return done[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"pysher: no subscription result on {channel} in {timeout} s: {self.events}")
            await asyncio.sleep(0.02)

    def trigger(self, channel: str, event: str, data: Any) -> None:
        self.client.channel(channel).trigger(event, data)

    async def close(self) -> None:
        # Pysher closes the socket, then joins its thread, which websocket-client may leave waiting in a
        # select for a while: a short join is enough (its threads are daemons and the socket is closed).
        await asyncio.to_thread(self.client.disconnect, 1)


class PyServerSdk:
    """The `pusher` PyPI SDK (pusher-http-python): blocking calls run in a thread."""

    def __init__(self, app: PusherApp, **overrides: Any) -> None:
        options: dict[str, Any] = {
            "app_id": app.app_id,
            "key": app.key,
            "secret": app.secret,
            "host": app.host,
            "port": app.port,
            "ssl": False,
            "timeout": 10,
            **overrides,
        }
        self.client = pusher_sdk.Pusher(**options)

    async def run(self, method: str, *args: Any, skew: float = 0, **kwargs: Any) -> Any:
        """Calls the SDK's `method`; with `skew`, the clock it signs with reads that many seconds off."""

        def call() -> Any:
            with _clock(skew):
                return getattr(self.client, method)(*args, **kwargs)

        return await asyncio.to_thread(call)

    async def send_twice(self, method: str, *args: Any) -> tuple[int, int]:
        """The SDK signs one request (its own `make_request`); it is sent twice, byte for byte: the statuses."""
        request = getattr(self.client._pusher_client, method).make_request(*args)
        send = self.client._pusher_client.http.send_request
        first = await self.status_of(asyncio.to_thread, send, request)  # blocking: the server runs in this loop
        return first, await self.status_of(asyncio.to_thread, send, request)

    async def status(self, method: str, *args: Any, **kwargs: Any) -> int:
        """The HTTP status the SDK's call ended with (200 when it returned)."""
        return await self.status_of(self.run, method, *args, **kwargs)

    @staticmethod
    async def status_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        try:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                await result
        except pusher_sdk.errors.PusherBadRequest:
            return 400
        except pusher_sdk.errors.PusherBadAuth:
            return 401
        except pusher_sdk.errors.PusherForbidden:
            return 403
        except pusher_sdk.errors.PusherBadStatus as exc:
            return int(str(exc).split(":", 1)[0])
        return 200


@contextlib.contextmanager
def _clock(skew: float) -> Iterator[None]:
    """pusher-http-python reads `time.time()` for auth_timestamp in pusher.http: shift only that."""
    if not skew:
        yield
        return
    real = time.time
    with mock.patch.object(pusher_http, "time", SimpleNamespace(time=lambda: real() + skew)):
        yield
