"""The Pusher HTTP API against a live server on both backend sets: requests signed as the libraries
sign them (tests/pusher/test_http_auth.signed_query), Pusher WebSocket clients and the platform's
own history to see what was (and was not) published."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from pushwire.tenants.views import AppCreated
from tests.live import LiveServer
from tests.pusher.test_http_auth import signed_query


@pytest.fixture
def server(live: LiveServer) -> LiveServer:
    return live


class Api:
    """A Pusher server library's requests to one app: `python=True` signs as pusher-http-python
    (body_md5 on every request, values URL-encoded), else as pusher-http-node."""

    def __init__(
        self, live: LiveServer, created: AppCreated | None = None, secret: str | None = None, key: str | None = None
    ) -> None:
        c = created or live.created
        self.base = live.http
        self.app_id = c.app_id
        self.key = key or c.server_key.key_id
        self.secret = secret or c.server_key.secret
        self.http = httpx.AsyncClient(base_url=live.http, timeout=10)

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: Any, full_path: str | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        p = full_path or f"/apps/{self.app_id}{path}"
        query = signed_query("POST", p, self.key, self.secret, raw)
        return await self.http.post(f"{p}?{query}", content=raw, headers={"content-type": "application/json"})

    async def get(self, path: str, python: bool = False, **params: str) -> httpx.Response:
        p = f"/apps/{self.app_id}{path}"
        query = signed_query("GET", p, self.key, self.secret, params=params, body_md5=python)
        return await self.http.get(f"{p}?{query}")

    async def trigger(self, channels: list[str], name: str, data: str, **extra: Any) -> httpx.Response:
        return await self.post("/events", {"name": name, "channels": channels, "data": data, **extra})


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    a = Api(server)
    try:
        yield a
    finally:
        await a.close()


class PusherSocket:
    """A minimal Pusher protocol 7 client (the real libraries are driven by the other tests)."""

    def __init__(self, ws: websockets.ClientConnection, socket_id: str, key: str, secret: str) -> None:
        self.ws = ws
        self.socket_id = socket_id
        self.key = key
        self.secret = secret

    @classmethod
    async def connect(cls, live: LiveServer, created: AppCreated | None = None) -> PusherSocket:
        c = created or live.created
        ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/app/{c.server_key.key_id}?protocol=7&client=js")
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["event"] == "pusher:connection_established", hello
        return cls(ws, json.loads(hello["data"])["socket_id"], c.server_key.key_id, c.server_key.secret)

    def _auth(self, text: str) -> str:
        return f"{self.key}:{hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()}"

    async def send(self, event: str, data: Any) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))

    async def subscribe(self, channel: str, user_id: str | None = None) -> None:
        data: dict[str, Any] = {"channel": channel}
        if user_id is not None:
            data["channel_data"] = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
            data["auth"] = self._auth(f"{self.socket_id}:{channel}:{data['channel_data']}")
        elif channel.startswith("private-"):
            data["auth"] = self._auth(f"{self.socket_id}:{channel}")
        await self.send("pusher:subscribe", data)
        await self.next(lambda f: f["event"] == "pusher_internal:subscription_succeeded" and f["channel"] == channel)

    async def sign_in(self, user_id: str) -> None:
        user_data = json.dumps({"id": user_id})
        await self.send(
            "pusher:signin", {"user_data": user_data, "auth": self._auth(f"{self.socket_id}::user::{user_data}")}
        )
        await self.next(lambda f: f["event"] == "pusher:signin_success")

    async def next(self, match: Any = None, timeout: float = 10) -> dict[str, Any]:
        """The next frame (that matches), skipping pings."""
        async with asyncio.timeout(timeout):
            while True:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
                if frame["event"] == "pusher:ping":
                    await self.send("pusher:pong", {})
                    continue
                if match is None or match(frame):
                    return frame

    async def event(self, timeout: float = 10) -> dict[str, Any]:
        return await self.next(lambda f: not f["event"].startswith(("pusher:", "pusher_internal:")), timeout)

    async def close(self) -> None:
        await self.ws.close()


async def history(live: LiveServer, channel: str, created: AppCreated | None = None) -> list[dict[str, Any]]:
    async with live.pusher(created) as pw:
        messages: list[dict[str, Any]] = (await pw.history(channel))["messages"]
        return messages


async def wait_occupied(api: Api, channel: str, count: int = 1) -> None:
    """Counts reach the cluster's state within ~1 s (each instance publishes them every 0.2 s)."""
    deadline = time.monotonic() + 10
    while True:
        r = await api.get(f"/channels/{channel}", info="user_count" if channel.startswith("presence-") else "")
        body = r.json()
        if body.get("occupied") and body.get("user_count", count) >= count:
            return
        assert time.monotonic() < deadline, f"{channel} never occupied: {body}"
        await asyncio.sleep(0.1)


# -- triggers ------------------------------------------------------------------------------------


async def test_trigger_reaches_pusher_subscribers_and_is_stored(server: LiveServer, api: Api) -> None:
    sock = await PusherSocket.connect(server)
    try:
        await sock.subscribe("room-1")
        r = await api.trigger(["room-1", "room-2"], "greeting", '{"message":"hello"}')
        assert (r.status_code, r.json()) == (200, {})
        assert await sock.event() == {"event": "greeting", "channel": "room-1", "data": '{"message":"hello"}'}
    finally:
        await sock.close()
    # One platform underneath: durable, in both channels' history, data stored as the string sent.
    for channel in ("room-1", "room-2"):
        [m] = await history(server, channel)
        assert (m["event"], m["data"], m["offset"]) == ("greeting", '{"message":"hello"}', 1)


async def test_channel_field_and_python_style_body(server: LiveServer, api: Api) -> None:
    # The Python library's json.dumps has spaces: the raw body is signed, never re-serialised.
    raw = b'{"name": "e", "channel": "solo", "data": "x"}'
    assert (await api.post("/events", raw)).status_code == 200
    assert [m["data"] for m in await history(server, "solo")] == ["x"]


async def test_socket_id_excludes_that_connection(server: LiveServer, api: Api) -> None:
    a, b = await PusherSocket.connect(server), await PusherSocket.connect(server)
    try:
        await a.subscribe("private-chat")
        await b.subscribe("private-chat")
        assert (await api.trigger(["private-chat"], "one", "1", socket_id=a.socket_id)).status_code == 200
        assert (await api.trigger(["private-chat"], "two", "2")).status_code == 200
        assert [(await b.event())["event"], (await b.event())["event"]] == ["one", "two"]
        assert (await a.event())["event"] == "two"  # "one" was never sent to a
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("socket_id", ["abc", "1.2.3", "12", "1.", " 1.2", "١.٢"])
async def test_bad_socket_id_is_400(server: LiveServer, api: Api, socket_id: str) -> None:
    r = await api.trigger(["room"], "e", "x", socket_id=socket_id)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    assert await history(server, "room") == []


async def test_data_over_10_kb_is_413(server: LiveServer, api: Api) -> None:
    assert (await api.trigger(["big"], "e", "x" * 10_240)).status_code == 200
    r = await api.trigger(["big"], "e", "y" * 10_241)
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
    # UTF-8 bytes, not characters: 5,121 two-byte characters are 10,242 bytes.
    assert (await api.trigger(["big"], "e", "é" * 5_121)).status_code == 413
    batch = [{"channel": "big", "name": "e", "data": "ok"}, {"channel": "big", "name": "e", "data": "z" * 10_241}]
    assert (await api.post("/batch_events", {"batch": batch})).status_code == 413
    assert len(await history(server, "big")) == 1


async def test_whole_body_over_1_mib_is_413(api: Api) -> None:
    r = await api.post("/events", b'{"name":"e","channels":["a"],"data":"' + b"x" * (1024 * 1024) + b'"}')
    assert r.status_code == 413


async def test_channel_count_limits(server: LiveServer, api: Api) -> None:
    r = await api.trigger([f"c{i}" for i in range(101)], "e", "x")
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    assert (await api.trigger([f"c{i}" for i in range(100)], "e", "x")).status_code == 200
    assert [m["offset"] for m in await history(server, "c99")] == [1]
    assert (await api.trigger([], "e", "x2")).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"channels": ["a"], "data": "x"},  # no name
        {"name": "e", "channels": ["a"]},  # no data
        {"name": "e", "channels": ["a"], "data": {"not": "a string"}},
        {"name": "e", "data": "x"},  # no channel
        {"name": "e", "channels": ["a"], "channel": "b", "data": "x"},
        {"name": "pusher:x", "channels": ["a"], "data": "x"},
        {"name": "e" * 65, "channels": ["a"], "data": "x"},
        {"name": "e", "channels": ["bad channel"], "data": "x"},
        {"name": "e", "channels": ["broadcast"], "data": "x"},
        {"name": "e", "channels": ["private-encrypted-a", "b"], "data": "x"},
        {"name": "e", "channels": ["a"], "data": "x", "info": "occupied"},
    ],
)
async def test_bad_trigger_bodies_are_400(server: LiveServer, api: Api, body: dict[str, Any]) -> None:
    r = await api.post("/events", body)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
    assert await history(server, "a") == []


async def test_not_json_is_400(api: Api) -> None:
    assert (await api.post("/events", b"{nope")).status_code == 400


async def test_batch_publishes_each_event_to_its_channel(server: LiveServer, api: Api) -> None:
    batch = [
        {"channel": "b-1", "name": "e1", "data": "{}"},
        {"channel": "#server-to-user-u7", "name": "e2", "data": '"x"'},
        {"channel": "b-1", "name": "e3", "data": "3"},
    ]
    r = await api.post("/batch_events", {"batch": batch})
    assert (r.status_code, r.json()) == (200, {})
    assert [(m["event"], m["data"]) for m in await history(server, "b-1")] == [("e1", "{}"), ("e3", "3")]
    assert [m["data"] for m in await history(server, "user.u7")] == ['"x"']


async def test_batch_limits_refuse_it_whole(server: LiveServer, api: Api) -> None:
    eleven = [{"channel": "b-2", "name": "e", "data": str(i)} for i in range(11)]
    r = await api.post("/batch_events", {"batch": eleven})
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    assert (await api.post("/batch_events", {"batch": []})).status_code == 400
    one_bad = [
        {"channel": "b-2", "name": "e", "data": "ok"},
        {"channel": "b-2", "name": "e", "data": "x", "socket_id": "x"},
    ]
    assert (await api.post("/batch_events", {"batch": one_bad})).status_code == 400
    assert await history(server, "b-2") == []
    assert (await api.post("/batch_events", {"batch": eleven[:10]})).status_code == 200
    assert len(await history(server, "b-2")) == 10


async def test_triggers_take_the_push_rate(server: LiveServer) -> None:
    api = Api(server, await server.new_app(push_rate=1, push_burst=3))
    try:
        batch = [{"channel": "rated", "name": "e", "data": str(i)} for i in range(2)]
        assert (await api.post("/batch_events", {"batch": batch})).status_code == 200  # costs 2
        assert (await api.trigger(["rated", "rated-2"], "e", "3")).status_code == 200  # one message: 1
        r = await api.trigger(["rated"], "e", "4")
        assert (r.status_code, r.json()["error"]) == (429, "rate_limited")
    finally:
        await api.close()


async def test_publishing_paused_is_503(server: LiveServer, api: Api) -> None:
    await server.runtime.config.put("push_enabled", False)
    try:
        for _ in range(100):
            if not server.runtime.push_enabled:
                break
            await asyncio.sleep(0.05)
        r = await api.trigger(["paused"], "e", "x")
        assert (r.status_code, r.headers.get("retry-after")) == (503, "5")
    finally:
        await server.runtime.config.put("push_enabled", True)
    assert await history(server, "paused") == []


# -- info, channels, users ------------------------------------------------------------------------


async def test_info_attributes_and_channel_queries(server: LiveServer, api: Api) -> None:
    s1, s2, s3 = [await PusherSocket.connect(server) for _ in range(3)]
    try:
        await s1.subscribe("presence-room", "1")
        await s2.subscribe("presence-room", "2")
        await s3.subscribe("news")
        await wait_occupied(api, "presence-room", 2)
        await wait_occupied(api, "news")

        r = await api.trigger(["news", "presence-room"], "e", "x", info="user_count,subscription_count")
        assert r.json() == {
            "channels": {
                "news": {"subscription_count": 1},  # user_count applies to presence channels only
                "presence-room": {"user_count": 2, "subscription_count": 2},
            }
        }
        batch = [
            {"channel": "presence-room", "name": "e", "data": "1", "info": "user_count"},
            {"channel": "news", "name": "e", "data": "2"},
        ]
        assert (await api.post("/batch_events", {"batch": batch})).json() == {"batch": [{"user_count": 2}, {}]}

        # GET /channels: attributes {} unless asked; user_count only with filter_by_prefix=presence-.
        assert (await api.get("/channels")).json() == {"channels": {"news": {}, "presence-room": {}}}
        r = await api.get("/channels", python=True, filter_by_prefix="presence-", info="user_count")
        assert r.json() == {"channels": {"presence-room": {"user_count": 2}}}
        assert (await api.get("/channels", filter_by_prefix="new")).json() == {"channels": {"news": {}}}
        r = await api.get("/channels", info="user_count")
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        assert (await api.get("/channels", filter_by_prefix="private-", info="user_count")).status_code == 400

        # GET /channels/{name}
        r = await api.get("/channels/presence-room", python=True, info="user_count,subscription_count")
        assert r.json() == {"occupied": True, "user_count": 2, "subscription_count": 2}
        assert (await api.get("/channels/news", info="subscription_count")).json() == {
            "occupied": True,
            "subscription_count": 1,
        }
        assert (await api.get("/channels/empty")).json() == {"occupied": False}
        assert (await api.get("/channels/news", info="user_count")).status_code == 400
        r = await api.get("/channels/bad channel")  # signed as written, sent as bad%20channel
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")

        # GET /channels/{name}/users: presence only, each user once.
        users = (await api.get("/channels/presence-room/users", python=True)).json()["users"]
        assert sorted(u["id"] for u in users) == ["1", "2"]
        r = await api.get("/channels/news/users")
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    finally:
        for s in (s1, s2, s3):
            await s.close()


async def test_reads_need_presence_read_and_get(server: LiveServer) -> None:
    key = await server.runtime.tenancy.create_server_key(server.created.app_id, server.tenant_id, scopes=["push"])
    api = Api(server, key=key.key_id, secret=key.secret)
    try:
        r = await api.get("/channels")
        assert (r.status_code, r.json()["error"]) == (403, "scope_missing")
        assert (await api.trigger(["scoped"], "e", "x")).status_code == 200
        r = await api.post("/channels", {})
        assert r.status_code == 405
    finally:
        await api.close()


# -- authentication -------------------------------------------------------------------------------


async def test_wrong_secret_and_unknown_key_are_401_and_publish_nothing(server: LiveServer) -> None:
    forged = Api(server, secret="0" * 40)
    unknown = Api(server, key="sk_unknownkey0000", secret="0" * 40)
    try:
        for api in (forged, unknown):
            r = await api.trigger(["guarded"], "e", "x")
            assert r.status_code == 401 and r.json()["error"] in ("bad_signature", "unknown_key"), r.text
            assert (await api.get("/channels")).status_code == 401
    finally:
        await forged.close()
        await unknown.close()
    assert await history(server, "guarded") == []


async def test_replayed_trigger_is_401(server: LiveServer, api: Api) -> None:
    raw = json.dumps({"name": "e", "channels": ["once"], "data": "x"}).encode()
    p = f"/apps/{api.app_id}/events"
    url = f"{p}?{signed_query('POST', p, api.key, api.secret, raw)}"
    headers = {"content-type": "application/json"}
    assert (await api.http.post(url, content=raw, headers=headers)).status_code == 200
    r = await api.http.post(url, content=raw, headers=headers)
    assert (r.status_code, r.json()["error"]) == (401, "replayed")
    assert len(await history(server, "once")) == 1


async def test_two_apps_never_see_each_others_channels(server: LiveServer, api: Api) -> None:
    other = await server.new_app(push_rate=1000, push_burst=1000)
    api_b = Api(server, other)
    mine = await PusherSocket.connect(server)
    theirs = await PusherSocket.connect(server, other)
    try:
        await mine.subscribe("shared")
        await theirs.subscribe("shared")
        await theirs.subscribe("only-b")
        await wait_occupied(api_b, "only-b")
        await wait_occupied(api, "shared")
        assert (await api_b.trigger(["shared"], "from-b", "b")).status_code == 200
        assert (await api.trigger(["shared"], "from-a", "a")).status_code == 200
        assert (await mine.event())["event"] == "from-a"
        assert (await theirs.event())["event"] == "from-b"
        assert (await api.get("/channels")).json() == {"channels": {"shared": {}}}
        assert (await api.get("/channels/only-b")).json() == {"occupied": False}
        # B's key naming A's app: refused, nothing published there.
        cross = Api(server, other)
        cross.app_id = server.created.app_id
        try:
            assert (await cross.trigger(["shared"], "cross", "x")).status_code == 401
            assert (await cross.get("/channels")).status_code == 401
        finally:
            await cross.close()
        assert [m["event"] for m in await history(server, "shared")] == ["from-a"]
        assert [m["event"] for m in await history(server, "shared", other)] == ["from-b"]
    finally:
        await mine.close()
        await theirs.close()
        await api_b.close()


# -- terminate_connections -------------------------------------------------------------------------


@pytest.mark.parametrize("prefixed", [True, False], ids=["apps-prefix", "python-sdk-path"])
async def test_terminate_connections(server: LiveServer, api: Api, prefixed: bool) -> None:
    sock = await PusherSocket.connect(server)
    try:
        await sock.sign_in("u-9")
        if prefixed:
            r = await api.post("/users/u-9/terminate_connections", {})
        else:
            r = await api.post("", {}, full_path="/users/u-9/terminate_connections")
        assert (r.status_code, r.json()) == (200, {})
        error = await sock.next(lambda f: f["event"] == "pusher:error")
        assert error["data"]["code"] == 4009
    finally:
        await sock.close()
    assert (await api.post("/users/bad user/terminate_connections", {})).status_code == 400
