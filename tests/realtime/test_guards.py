"""Refusals and limits of the WebSocket transport; every bad input gets a clear answer and others are undisturbed."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live import Client, LiveServer


async def _refused_status(url: str, **kw: object) -> int:
    with pytest.raises(websockets.InvalidStatus) as err:
        await websockets.connect(url, **kw)  # type: ignore[arg-type]
    return int(err.value.response.status_code)


@pytest.mark.parametrize(
    "make_token",
    [
        lambda live: "",
        lambda live: "not-a-jwt",
        lambda live: live.token("u1", ttl=-120),  # expired beyond the leeway
        lambda live: jwt.encode(
            {"sub": "u1", "app": live.app_id, "exp": int(time.time()) + 60},
            "wrong-secret",
            algorithm="HS256",
            headers={"kid": live.created.client_key.kid},
        ),
        lambda live: jwt.encode(
            {"sub": "u1", "app": live.app_id, "exp": int(time.time()) + 60},
            key=None,
            algorithm="none",
            headers={"kid": live.created.client_key.kid},
        ),
    ],
)
async def test_bad_tokens_refused_with_401(live: LiveServer, make_token) -> None:  # type: ignore[no-untyped-def]
    assert await _refused_status(live.ws_url(make_token(live))) == 401


async def test_token_of_another_apps_key_refused(live: LiveServer) -> None:
    other = await live.new_app()
    foreign = jwt.encode(
        {"sub": "u1", "app": live.app_id, "exp": int(time.time()) + 60},
        other.client_key.secret,
        algorithm="HS256",
        headers={"kid": other.client_key.kid},
    )
    assert await _refused_status(live.ws_url(foreign)) == 401


async def test_bearer_header_is_accepted(live: LiveServer) -> None:
    url = f"ws://127.0.0.1:{live.port}/api/v1/ws"
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {live.token('ub')}"})
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.close()


async def test_a_percent_encoded_token_among_other_parameters_is_read(live: LiveServer) -> None:
    token = live.token("uq").replace(".", "%2E")
    url = f"ws://127.0.0.1:{live.port}/api/v1/ws?x=1&token={token}&y"
    ws = await websockets.connect(url)
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.close()


async def test_plain_http_to_the_websocket_path_gets_426(live: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{live.port}/api/v1/ws?token={live.token('uh')}")
    assert r.status_code == 426
    assert r.json()["error"] == "upgrade_required"


async def test_origin_allow_list(live: LiveServer) -> None:
    app = await live.new_app(origins=["https://good.example"])
    token = live.token("u1", created=app)
    assert await _refused_status(live.ws_url(token), origin="https://evil.example") == 403
    ok = await websockets.connect(live.ws_url(token), origin="https://good.example")
    assert json.loads(await ok.recv())["type"] == "welcome"
    await ok.close()
    no_origin = await websockets.connect(live.ws_url(token))  # not a browser: not subject to the list
    assert json.loads(await no_origin.recv())["type"] == "welcome"
    await no_origin.close()


async def test_forbidden_room(live: LiveServer) -> None:
    async with await Client.connect(live.ws_url(live.token("u1", ["room.*"]))) as c:
        await c.recv_until("welcome")
        for channel in ("secret", "user.someoneelse"):
            await c.send({"type": "subscribe", "channel": channel})
            err = await c.recv_until("error")
            assert (err["code"], err["channel"]) == ("forbidden", channel)
        await c.send({"type": "subscribe", "channel": "room.ok"})
        assert (await c.recv_until("subscribed"))["channel"] == "room.ok"


async def test_connection_limits_close_4004(live: LiveServer) -> None:
    app = await live.new_app(max_connections_per_user=2, max_connections=3)
    keep = []
    for user in ("a", "a"):
        c = await Client.connect(live.ws_url(live.token(user, created=app)))
        await c.recv_until("welcome")
        keep.append(c)
    third = await websockets.connect(live.ws_url(live.token("a", created=app)))
    with pytest.raises(websockets.ConnectionClosed):
        await third.recv()
    assert third.close_code == 4004
    c = await Client.connect(live.ws_url(live.token("b", created=app)))
    await c.recv_until("welcome")
    keep.append(c)
    fourth = await websockets.connect(live.ws_url(live.token("c", created=app)))
    with pytest.raises(websockets.ConnectionClosed):
        await fourth.recv()
    assert fourth.close_code == 4004
    for c in keep:
        await c.close()


async def test_frame_over_64k_closes_1009(live: LiveServer) -> None:
    ws = await websockets.connect(live.ws_url(live.token("u1")))
    await ws.recv()
    await ws.send(json.dumps({"type": "ping", "pad": "x" * (65 * 1024)}))
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await ws.recv()
    assert ws.close_code == 1009


async def test_bad_frames_answered_then_4002(live: LiveServer) -> None:
    async with await Client.connect(live.ws_url(live.token("u1"))) as c:
        await c.recv_until("welcome")
        for frame in ("not json", '{"type": "nope"}', '{"type": "ack", "channel": "user.u1", "offset": 99}'):
            await c.ws.send(frame)
            err = await c.recv_until("error")
            assert err["code"] == "bad_frame" and err["message"]
        await c.ws.send(b"\x00binary")
        assert (await c.recv_until("error"))["code"] == "bad_frame"
        for _ in range(8):
            await c.ws.send("{")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await c.ws.recv()
        assert c.ws.close_code == 4002


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
garbage = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "ack", "unsubscribe", "ping"])},
        optional={"channel": st.text(max_size=200), "offset": json_values, "since": json_values},
    ).map(json.dumps),
)


async def test_random_malformed_frames_do_not_disturb_others(live: LiveServer) -> None:
    """1,000 random frames from one client (reconnecting when it is closed for them); a second client keeps receiving."""
    frames = []

    @settings(max_examples=1000, suppress_health_check=list(HealthCheck), database=None, deadline=None)
    @given(garbage)
    def collect(frame: str) -> None:
        frames.append(frame)

    collect()
    async with await Client.connect(live.ws_url(live.token("watcher"))) as watcher, live.pusher() as pw:
        await watcher.recv_until("welcome")
        fuzz = await Client.connect(live.ws_url(live.token("fuzzer", ["room.*"])))
        await fuzz.recv_until("welcome")
        sent = 0
        for i, frame in enumerate(frames):
            try:
                await fuzz.ws.send(frame)
                sent += 1
            except websockets.ConnectionClosed:
                assert fuzz.ws.close_code in (4002, 1000, 1009)
                fuzz = await Client.connect(live.ws_url(live.token("fuzzer", ["room.*"])))
            if i % 100 == 0:
                await pw.push(users=["watcher"], event="e", data=i)
        await fuzz.close()
        got = await watcher.messages(10)
        assert [m["data"] for m in got] == list(range(0, 1000, 100))
        assert sent >= 900


async def test_slow_consumer_closed_4008_others_continue(live: LiveServer) -> None:
    token = live.token("slow", ["room.flood"])
    slow = await websockets.connect(live.ws_url(token), max_queue=1, max_size=None)
    await slow.send(json.dumps({"type": "subscribe", "channel": "room.flood"}))
    fast = await Client.connect(live.ws_url(live.token("fast", ["room.flood"])))
    await fast.recv_until("welcome")
    await fast.send({"type": "subscribe", "channel": "room.flood"})
    await fast.recv_until("subscribed")
    await asyncio.sleep(0.2)
    payload = "x" * 10_000
    async with live.pusher() as pw:
        for _ in range(10):  # 100 x 10 KB = ~10 MB
            await pw.push_batch([{"channels": ["room.flood"], "event": "e", "data": payload} for _ in range(100)])
            got = await fast.messages(100, timeout=30)
            assert len(got) == 100
    # the slow client was closed with 4008 (it sees the close once it reads its backlog)
    codes = set()
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(30):
            while True:
                await slow.recv()
    codes.add(slow.close_code)
    assert codes == {4008}
    await fast.close()
