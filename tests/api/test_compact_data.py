"""Pretty-printed `data` is re-encoded compact at publish: SSE, WebSocket, long-poll, history and
batch pushes all carry one-line JSON equal to the pushed value; the payload limit counts the
compact bytes; data msgspec cannot represent is a 422, never a 500. Both backend sets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushwire.sdk.server import signed_headers
from tests.live import Client, LiveServer, backend_env, live_server

VALUE: dict[str, Any] = {"a": 1, "b": [2, 3.5, "x\ny"], "c": {"d": None, "e": True}, "é": "ü"}
PRETTY = json.dumps(VALUE, indent=2, ensure_ascii=False)  # raw newlines between the tokens
COMPACT = json.dumps(VALUE, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(await backend_env(request, tmp_path, PUSHWIRE_HEARTBEAT="25")) as server:
        yield server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signed_post(live: LiveServer, path: str, body: bytes, app: Any = None) -> httpx.Response:
    """POST exactly `body` (the SDK would re-serialise it compact)."""
    c = app or live.created
    headers = signed_headers(c.server_key.key_id, c.server_key.secret, "POST", path, (), body)
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.post(live.http + path, content=body, headers=headers | {"Content-Type": "application/json"})


def _pretty_push(channel: str, data: str = PRETTY) -> bytes:
    return ('{\n  "channels": ["' + channel + '"],\n  "event": "e",\n  "data": ' + data + "\n}").encode()


async def _sse_messages(http: httpx.AsyncClient, want: int, lines: list[list[str]]) -> None:
    """Collect the `data:` lines of `want` message events (each event's lines, raw)."""
    async with http.stream("GET", "/api/v1/sse") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event: list[str] = []
        async for line in r.aiter_lines():
            if line == "":
                if "event: message" in event:
                    lines.append([x for x in event if x.startswith("data:")])
                    if len(lines) >= want:
                        return
                event = []
            else:
                event.append(line)


async def test_pretty_data_is_compact_on_sse_websocket_longpoll_and_history(live: LiveServer) -> None:
    token = live.token("cd1")
    async with (
        httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=30) as http,
        await Client.connect(live.ws_url(token)) as ws,
    ):
        await ws.recv_until("welcome")
        sse_lines: list[list[str]] = []
        reader = asyncio.create_task(_sse_messages(http, 2, sse_lines))
        await asyncio.sleep(0.5)
        single = await _signed_post(live, "/api/v1/push", _pretty_push("user.cd1"))
        assert single.status_code == 202, single.text
        batch_body = '{"messages": [\n' + _pretty_push("user.cd1").decode() + "\n]}"
        batch = await _signed_post(live, "/api/v1/push/batch", batch_body.encode())
        assert batch.status_code == 200 and batch.json()["results"][0]["status"] == 202, batch.text
        ids = [single.json()["id"], batch.json()["results"][0]["id"]]

        # SSE: each message event is exactly one data line holding the whole JSON message.
        await asyncio.wait_for(reader, 15)
        for event_lines, msg_id in zip(sse_lines, ids, strict=True):
            assert len(event_lines) == 1, event_lines
            message = json.loads(event_lines[0].removeprefix("data: "))
            assert (message["id"], message["data"]) == (msg_id, VALUE)
            assert COMPACT.decode() in event_lines[0]

        # WebSocket: the frame text is the same compact message.
        frames = []
        async with asyncio.timeout(15):
            while len(frames) < 2:
                raw = await ws.ws.recv()
                if '"type":"message"' in raw:
                    frames.append(raw)
        for raw, msg_id in zip(frames, ids, strict=True):
            assert "\n" not in raw and COMPACT.decode() in raw
            assert (json.loads(raw)["id"], json.loads(raw)["data"]) == (msg_id, VALUE)

        # Long-poll (first poll: the unread messages, from hot history or the database).
        polled = await http.get("/api/v1/longpoll", params={"timeout": "1"})
        assert polled.status_code == 200
        assert COMPACT.decode() in polled.text and "\n" not in polled.text
        assert [(m["id"], m["data"]) for m in polled.json()["messages"]] == [(i, VALUE) for i in ids]

    # What was stored is compact too: the history API and the database row.
    async with live.pusher() as pw:
        page = await pw.history("user.cd1")
    assert [m["data"] for m in page["messages"]] == [VALUE, VALUE]
    history = await _history_raw(live, "user.cd1")
    assert history.count(COMPACT) == 2 and b"\n" not in history


async def _history_raw(live: LiveServer, channel: str) -> bytes:
    c, path = live.created, f"/api/v1/channels/{channel}/history"
    headers = signed_headers(c.server_key.key_id, c.server_key.secret, "GET", path)
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(live.http + path, headers=headers)
    assert r.status_code == 200
    return r.content


async def test_payload_limit_counts_the_compact_bytes(live: LiveServer) -> None:
    small = await live.new_app(max_payload_bytes=len(COMPACT))
    ok = await _signed_post(live, "/api/v1/push", _pretty_push("room.p"), small)
    assert len(PRETTY.encode()) > len(COMPACT)  # the pretty form alone is over the limit
    assert ok.status_code == 202, ok.text
    # One byte over, even written compact: 413 with the spec's body.
    over = json.dumps({**VALUE, "f": 1}, indent=2)
    refused = await _signed_post(live, "/api/v1/push", _pretty_push("room.p", over), small)
    assert refused.status_code == 413 and refused.json()["error"] == "payload_too_large", refused.text
    batch_body = '{"messages": [' + _pretty_push("room.p", over).decode() + "," + _pretty_push("room.p").decode() + "]}"
    batch = await _signed_post(live, "/api/v1/push/batch", batch_body.encode(), small)
    assert [r["status"] for r in batch.json()["results"]] == [413, 202]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("1e400", "$.data"),  # valid JSON syntax, but no number msgspec (or a browser) can hold
        ("[" * 2000 + "]" * 2000, "$"),  # nested past the decoder's depth limit
        ('{"a": 1,}', "$"),  # trailing comma
    ],
)
async def test_data_that_cannot_be_reencoded_is_422(live: LiveServer, data: str, field: str) -> None:
    r = await _signed_post(live, "/api/v1/push", _pretty_push("room.bad", data))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request" and body["details"][0]["field"].startswith(field)
    batch = await _signed_post(
        live, "/api/v1/push/batch", ('{"messages": [' + _pretty_push("room.bad", data).decode() + "]}").encode()
    )
    assert batch.status_code in (200, 422), batch.text
    if batch.status_code == 200:
        assert batch.json()["results"][0]["status"] == 422
