"""The unmodified Pysher (PyPI; protocol 6, signs channel auth itself with the app secret) against a live
server on both backend sets: connect, public/private/presence channels, client events, refusals."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.pusher.conftest import Drivers
from tests.pusher.harness import PusherApp, PysherClient


def decoded(data: Any) -> Any:
    """Pysher passes a frame's `data` through as received: a JSON string for channel events."""
    return json.loads(data) if isinstance(data, str) else data


async def test_pysher_connects_and_receives_public_events_in_order(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pysher(app)
    assert re.fullmatch(r"\d+\.\d+", client.client.connection.socket_id)
    assert "protocol=6" in client.client.url
    client.subscribe("ticker", events=("price",))
    await client.subscribed("ticker")
    py = drivers.py_sdk(app)
    for i in range(5):
        await py.run("trigger", ["ticker"], "price", {"p": i, "s": "a/b é"})
    got = await client.wait("ticker", "price", 5)
    # Pysher hands channel data to callbacks as the raw string it received.
    assert [decoded(d) for d in got] == [{"p": i, "s": "a/b é"} for i in range(5)]
    # Pysher pings on open and reads the pong.
    await client.wait(None, "pusher:pong")


async def test_pysher_private_and_presence_channels(app: PusherApp, drivers: Drivers) -> None:
    user = {"user_id": "py1", "user_info": {"name": "Py"}}
    client = await drivers.pysher(app, user_data=user)
    client.subscribe("private-py", events=("secret",))
    await client.subscribed("private-py")
    client.subscribe("presence-py", events=("hello",))
    joined = await client.subscribed("presence-py")
    presence = decoded(joined)["presence"]
    assert presence["count"] == 1 and presence["ids"] == ["py1"] and presence["hash"] == {"py1": {"name": "Py"}}

    js = await drivers.pusher_js(app, presence={"user_id": "js2", "user_info": {"name": "Js"}})
    members = await js.subscribe("presence-py")
    assert members["count"] == 2 and members["members"]["py1"] == {"name": "Py"}
    [added] = await client.wait("presence-py", "pusher_internal:member_added")
    assert decoded(added) == {"user_id": "js2", "user_info": {"name": "Js"}}

    node = await drivers.node_sdk(app)
    await node.ok("trigger", channels="private-py", event="secret", data={"k": 1})
    await node.ok("trigger", channels="presence-py", event="hello", data="plain")
    assert [decoded(d) for d in await client.wait("private-py", "secret")] == [{"k": 1}]
    assert await client.wait("presence-py", "hello") == ["plain"]

    await js.disconnect()
    [removed] = await client.wait("presence-py", "pusher_internal:member_removed")
    assert decoded(removed)["user_id"] == "js2"


async def test_pysher_client_events_reach_pusher_js(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pysher(app, user_data={"user_id": "py1", "user_info": {}})
    js = await drivers.pusher_js(app, presence={"user_id": "js2", "user_info": {}})
    client.subscribe("presence-talk", events=("client-reply",))
    await client.subscribed("presence-talk")
    await js.subscribe("presence-talk")
    client.trigger("presence-talk", "client-hello", {"from": "pysher"})
    frame = await js.frame("client-hello", "presence-talk")
    assert frame["data"] == {"from": "pysher"} and frame["user_id"] == "py1"
    assert await js.trigger("presence-talk", "client-reply", {"from": "js"})
    [reply] = await client.wait("presence-talk", "client-reply")
    assert decoded(reply) == {"from": "js"}


async def test_pysher_with_a_wrong_secret_gets_a_subscription_error(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pysher(app, user_data={"user_id": "x", "user_info": {}}, secret="not-the-secret")
    for channel in ("private-locked", "presence-locked"):
        client.subscribe(channel)
        [error] = await client.wait(channel, "pusher:subscription_error")
        assert decoded(error)["status"] == 401, error
    assert client.client.connection.state == "connected"


async def test_pysher_with_an_unknown_key_is_refused_with_4001(app: PusherApp, drivers: Drivers) -> None:
    bogus = PusherApp(app.app_id, "sk_doesnotexist0000000", app.secret, app.host, app.port)
    client = PysherClient(bogus)
    drivers.pyshers.append(client)
    client.client.connect()
    [error] = await client.wait(None, "pusher:error")
    assert isinstance(error, dict) and error["code"] == 4001, error  # Pysher acts only on a dict
    await asyncio.sleep(0.5)
    assert not client.seen(None, "pusher:connection_established")
