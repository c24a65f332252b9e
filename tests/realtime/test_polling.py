"""Long-poll, SSE and the ack endpoint on both backend sets: stateless cursors, unread, no loss across restarts."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.live import Client, LiveServer


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_first_poll_welcome_unread_then_live(live: LiveServer) -> None:
    token = live.token("lp1", ["room.*"])
    async with httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http, live.pusher() as pw:
        await pw.push(users=["lp1"], event="e", data="unread")
        r = await http.get("/api/v1/longpoll", params=[("channel", "room.a"), ("timeout", "5")])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["welcome"]["user"] == "lp1"
        assert [m["data"] for m in body["messages"]] == ["unread"]
        cursor = body["cursor"]
        poll = asyncio.create_task(
            http.get("/api/v1/longpoll", params=[("channel", "room.a"), ("cursor", cursor), ("timeout", "10")])
        )
        await asyncio.sleep(0.3)
        await pw.push(channels=["room.a"], event="e", data="live")
        body = (await poll).json()
        assert [(m["channel"], m["data"]) for m in body["messages"]] == [("room.a", "live")]
        assert "welcome" not in body
        # while the client is away, messages pile up; the next poll with the cursor gets them all
        for i in range(30):
            await pw.push(channels=["room.a"], event="e", data=i)
        body2 = (
            await http.get(
                "/api/v1/longpoll", params=[("channel", "room.a"), ("cursor", body["cursor"]), ("timeout", "1")]
            )
        ).json()
        assert [m["data"] for m in body2["messages"]] == list(range(30))
        # an empty poll waits for its timeout and returns the same positions
        empty = (
            await http.get(
                "/api/v1/longpoll", params=[("channel", "room.a"), ("cursor", body2["cursor"]), ("timeout", "1")]
            )
        ).json()
        assert empty["messages"] == []


async def test_cursor_survives_a_restart_of_the_serving_instance(live: LiveServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The cursor is stateless: a second server with the same secret and database continues it."""
    from tests.live import live_server

    token = live.token("lp2")
    async with httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http, live.pusher() as pw:
        first = (await http.get("/api/v1/longpoll", params={"timeout": "1"})).json()
        for i in range(5):
            await pw.push(users=["lp2"], event="e", data=i)
    env = {
        "PUSHWIRE_SECRET_KEY": live.runtime.settings.secret_key,
        "PUSHWIRE_DATABASE_URL": live.runtime.settings.database_url,
        "PUSHWIRE_CACHE_URL": live.runtime.settings.cache_url,
    }
    async with (
        live_server(env) as other,
        httpx.AsyncClient(base_url=other.http, headers=_auth(token), timeout=40) as http2,
    ):
        body = (await http2.get("/api/v1/longpoll", params={"cursor": first["cursor"], "timeout": "2"})).json()
        assert [m["data"] for m in body["messages"]] == [0, 1, 2, 3, 4]


async def test_forged_or_foreign_cursor_is_400(live: LiveServer) -> None:
    a, b = live.token("lpa"), live.token("lpb")
    async with httpx.AsyncClient(base_url=live.http, timeout=20) as http:
        cursor = (await http.get("/api/v1/longpoll", params={"timeout": "1"}, headers=_auth(a))).json()["cursor"]
        r = await http.get("/api/v1/longpoll", params={"cursor": cursor, "timeout": "1"}, headers=_auth(b))
        assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")
        forged = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
        r = await http.get("/api/v1/longpoll", params={"cursor": forged, "timeout": "1"}, headers=_auth(a))
        assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")
        r = await http.get("/api/v1/longpoll", params={"cursor": "!!notbase64", "timeout": "1"}, headers=_auth(a))
        assert r.status_code == 400
        other_app = await live.new_app()
        r = await http.get(
            "/api/v1/longpoll",
            params={"cursor": cursor, "timeout": "1"},
            headers=_auth(live.token("lpa", created=other_app)),
        )
        assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")


async def test_longpoll_refusals(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.http, timeout=20) as http:
        assert (await http.get("/api/v1/longpoll")).status_code == 401
        h = _auth(live.token("lpx", ["room.*"]))
        r = await http.get("/api/v1/longpoll", params=[("channel", "secret")], headers=h)
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        r = await http.get("/api/v1/longpoll", params=[("channel", "bad name")], headers=h)
        assert r.status_code == 422
        r = await http.get("/api/v1/longpoll", params=[("timeout", "31")], headers=h)
        assert r.status_code in (400, 422)


async def test_ack_endpoint_and_read_echo(live: LiveServer) -> None:
    token = live.token("lp3")
    async with live.pusher() as pw, httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=20) as http:
        ws = await Client.connect(live.ws_url(token))
        await ws.recv_until("welcome")
        await pw.push(users=["lp3"], event="e", data=1)
        await pw.push(users=["lp3"], event="e", data=2)
        await ws.messages(2)
        r = await http.post("/api/v1/ack", json={"channel": "user.lp3", "offset": 1})
        assert r.json() == {"channel": "user.lp3", "offset": 1}
        assert (await ws.recv_until("read"))["offset"] == 1
        r = await http.post("/api/v1/ack", json={"channel": "user.lp3", "offset": 0})
        assert r.json()["offset"] == 1  # cumulative: never moves back
        assert (await http.post("/api/v1/ack", json={"channel": "user.lp3", "offset": 99})).status_code == 422
        assert (await http.post("/api/v1/ack", json={"channel": "user.other", "offset": 1})).status_code == 403
        assert (await http.post("/api/v1/ack", content=b"{")).status_code == 422
        await ws.close()
        first = (await http.get("/api/v1/longpoll", params={"timeout": "1"})).json()
        assert [m["offset"] for m in first["messages"]] == [2]  # unread starts after the ack


async def test_sse_stream_and_resume_with_last_event_id(live: LiveServer) -> None:
    token = live.token("sse1")
    async with live.pusher() as pw, httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=30) as http:
        events: list[tuple[str, str, str]] = []

        async def read(headers: dict[str, str], want: int) -> None:
            async with http.stream("GET", "/api/v1/sse", headers=headers) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                ev: dict[str, str] = {}
                async for line in r.aiter_lines():
                    if line == "":
                        if ev.get("event") == "message":
                            events.append((ev["event"], ev["data"], ev["id"]))
                            if len([e for e in events if e[0] == "message"]) >= want:
                                return
                        ev = {}
                    elif not line.startswith(":"):
                        k, _, v = line.partition(": ")
                        ev[k] = v

        task = asyncio.create_task(read({}, 3))
        await asyncio.sleep(0.5)
        for i in range(3):
            await pw.push(users=["sse1"], event="e", data=i)
        await asyncio.wait_for(task, 15)
        assert [json.loads(d)["data"] for _, d, _ in events] == [0, 1, 2]
        last_id = events[1][2]  # pretend the browser got only the first two
        events.clear()
        task = asyncio.create_task(read({"Last-Event-ID": last_id}, 2))
        await asyncio.sleep(0.3)
        await pw.push(users=["sse1"], event="e", data=3)
        await asyncio.wait_for(task, 15)
        assert [json.loads(d)["data"] for _, d, _ in events] == [2, 3]


async def test_longpoll_presence_route(live: LiveServer) -> None:
    token = live.token("lp4")
    async with live.pusher() as pw, httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=20) as http:
        await http.get("/api/v1/longpoll", params={"timeout": "1"})
        p = await pw.presence("lp4")
        assert p["online"] and p["connections"][0]["transport"] == "longpoll"


async def test_a_waiting_long_poll_ends_when_the_client_hangs_up(live: LiveServer) -> None:
    token = live.token("lp-gone", ["room.*"])
    async with httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http:
        first = (await http.get("/api/v1/longpoll", params={"timeout": "1"})).json()
        before = live.runtime.hub.count()
        poll = asyncio.create_task(
            http.get("/api/v1/longpoll", params=[("cursor", first["cursor"]), ("timeout", "30")])
        )
        async with asyncio.timeout(5):
            while live.runtime.hub.count() == before:  # the poll is waiting, attached to the hub
                await asyncio.sleep(0.02)
        poll.cancel()  # closes the connection
        await asyncio.gather(poll, return_exceptions=True)
    # The server lets go at once, not after the 30 s timeout.
    async with asyncio.timeout(3):
        while live.runtime.hub.count() != before:
            await asyncio.sleep(0.02)
