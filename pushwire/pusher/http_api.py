"""The Pusher HTTP API (`/apps/{app_id}/...`, notes §4.4–4.5) over the platform's channels.

Every trigger is a durable platform publish, exactly as a native push: the same commit before the
answer, offsets, history and tracing; native subscribers of the channel get it as an ordinary
message whose `data` is the string the tenant sent. Counts and members come from the cluster's
state (runtime.pusher). Refusals are ApiErrors rendered as `{"error", "message"}` with Pusher's
status codes: 400 for a bad body, 401 for every signing failure, 403 for a key's allow-list,
scope or disabled app, 413 for data over 10 KB, 429 over the app's push rate (one per event).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from pushwire.errors import ApiError
from pushwire.messaging.publish import PublishRequest, PublishResult
from pushwire.names import is_user_id
from pushwire.pusher.http_auth import PusherRequest, authenticate, read_request
from pushwire.pusher.http_schemas import BatchBody, TriggerBody
from pushwire.pusher.names import is_encrypted, is_event, is_listed, is_presence, platform_channel, pusher_channel
from pushwire.pusher.service import PusherService
from pushwire.runtime import Runtime
from pushwire.tenants.auth import Caller
from pushwire.tracing.spans import downstream_traceparent, push_span

# Pusher's limits (notes §4.4): data is measured in UTF-8 bytes of the string as received.
MAX_DATA = 10 * 1024
MAX_CHANNELS = 100
MAX_BATCH = 10
SOCKET_ID_RE = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
USER_COUNT = "user_count"
SUBSCRIPTION_COUNT = "subscription_count"
ATTRIBUTES = frozenset({USER_COUNT, SUBSCRIPTION_COUNT})
PUSH = "push"
READ = "presence:read"

_TRIGGER = msgspec.json.Decoder(TriggerBody)
_BATCH = msgspec.json.Decoder(BatchBody)
_ENCODER = msgspec.json.Encoder()
_EMPTY = b"{}"
T = TypeVar("T")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


class Event(msgspec.Struct, frozen=True):
    """One validated event: its Pusher channel names (as given, each once) and the publish."""

    channels: tuple[str, ...]
    request: PublishRequest
    info: frozenset[str]


# -- bodies --------------------------------------------------------------------------------------


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise bad_request(f"request body does not match the API: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None


def parse_info(value: str | None) -> frozenset[str]:
    """`info`: a comma list of attributes; one we do not know is refused rather than left out."""
    names = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    unknown = sorted(names - ATTRIBUTES)
    if unknown:
        raise bad_request(f"unknown info attribute(s) {', '.join(unknown)}; known: user_count, subscription_count")
    return names


def event(name: str, data: str, channels: Sequence[str], socket_id: str | None, info: str | None) -> Event:
    """An event checked against Pusher's rules (400, or 413 for data over 10 KB)."""
    if not is_event(name):
        raise bad_request("name must be 1..64 printable ASCII characters, not starting with pusher:")
    unique = tuple(dict.fromkeys(channels))  # a channel named twice gets the event once
    if not 1 <= len(unique) <= MAX_CHANNELS:
        raise bad_request(f"give 1..{MAX_CHANNELS} channels (got {len(unique)})")
    platform: list[str] = []
    for channel in unique:
        p = platform_channel(channel)
        if p is None:
            raise bad_request(f"invalid channel name {channel!r}")
        platform.append(p)
    if len(unique) > 1 and any(is_encrypted(c) for c in unique):
        # Each encrypted channel has its own key: the libraries encrypt per channel, never for several.
        raise bad_request("an event to a private-encrypted- channel must name that channel alone")
    if socket_id is not None and SOCKET_ID_RE.fullmatch(socket_id) is None:
        raise bad_request(f"invalid socket_id {socket_id!r}: expected digits.digits")
    attributes = parse_info(info)
    size = len(data.encode())
    if size > MAX_DATA:
        raise ApiError(413, "payload_too_large", f"event data is {size} bytes; the limit is {MAX_DATA}")
    request = PublishRequest(
        channels=tuple(platform),
        event=name,
        # Stored as a JSON string value: Pusher subscribers get it back as sent, native ones as a string.
        data=msgspec.Raw(msgspec.json.encode(data)),
        socket_id=socket_id,
    )
    return Event(channels=unique, request=request, info=attributes)


def parse_trigger(body: bytes) -> list[Event]:
    t = _decode(_TRIGGER, body)
    if t.channels is not None and t.channel is not None:
        raise bad_request("give channels or channel, not both")
    channels = t.channels if t.channels is not None else [t.channel] if t.channel is not None else None
    if channels is None:
        raise bad_request("channels (a list) or channel (a string) is required")
    return [event(t.name, t.data, channels, t.socket_id, t.info)]


def parse_batch(body: bytes) -> list[Event]:
    b = _decode(_BATCH, body)
    if not 1 <= len(b.batch) <= MAX_BATCH:
        raise bad_request(f"give 1..{MAX_BATCH} events in a batch (got {len(b.batch)})")
    out: list[Event] = []
    for i, e in enumerate(b.batch):
        try:
            out.append(event(e.name, e.data, [e.channel], e.socket_id, e.info))
        except ApiError as exc:
            # Pusher refuses the batch as a whole: nothing of it is published.
            raise ApiError(exc.status, exc.code, f"batch[{i}]: {exc.message}") from None
    return out


def _parsed(parse: Callable[[bytes], list[Event]], body: bytes) -> list[Event] | ApiError:
    """Parsed before authentication (its cost rides with the replay check), raised after it."""
    try:
        return parse(body)
    except ApiError as exc:
        return exc


# -- plumbing ------------------------------------------------------------------------------------

Req = Request[Any, Any, Any]


def _check_enabled(runtime: Runtime) -> None:
    if not runtime.push_enabled:
        raise ApiError(503, "unavailable", "publishing is paused by the operators", headers={"Retry-After": "5"})


async def _caller(runtime: Runtime, request: Req, permission: str, cost: int = 0) -> tuple[Caller, PusherRequest]:
    """Authenticate the request for the app in its path (or its key's, without one). The body is
    read whole first (Litestar refuses one over 1 MiB with 413): body_md5 covers it."""
    req = read_request(request.scope, await request.body())
    app_id = request.path_params.get("app_id")
    # Reads are not replay-checked (see http_auth.authenticate): the libraries sign no nonce.
    replay = request.method != "GET"
    return await authenticate(runtime.auth, req, app_id, permission, cost, replay), req


def _json(value: Any) -> Response[bytes]:
    return Response(_EMPTY if value == {} else _ENCODER.encode(value), media_type=MediaType.JSON, status_code=200)


async def _attributes(
    state: PusherService, app_id: str, channels: Sequence[tuple[str, str]], info: frozenset[str]
) -> list[dict[str, int]]:
    """The requested attributes of each (Pusher name, platform name), in order. On a trigger an
    attribute that does not apply to a channel is left out for it (user_count on a public one)."""
    occupied = await state.occupied(app_id) if SUBSCRIPTION_COUNT in info else {}
    presence = [p for name, p in channels if USER_COUNT in info and is_presence(name)]
    found = await asyncio.gather(*(state.members(app_id, p) for p in presence))
    users = {p: len(m) for p, m in zip(presence, found, strict=True)}
    out: list[dict[str, int]] = []
    for _, platform in channels:
        attrs: dict[str, int] = {}
        if platform in users:
            attrs[USER_COUNT] = users[platform]
        if SUBSCRIPTION_COUNT in info:
            attrs[SUBSCRIPTION_COUNT] = occupied.get(platform, 0)
        out.append(attrs)
    return out


async def _publish(
    runtime: Runtime, request: Req, route: str, arrived: int, caller: Caller, events: list[Event]
) -> None:
    """Publish the events durably (one transaction), traced as a native push is."""
    sampled = runtime.tracing.sampled()
    incoming = request.headers.get("traceparent") if sampled else None
    with push_span(runtime.tracing.tracer, route, incoming, None, arrived, sampled=sampled) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "app_id": caller.app_id,
                    "tenant_id": caller.app.tenant_id,
                    "instance_id": runtime.settings.instance_id,
                }
            )
        traceparent = downstream_traceparent(span)
        requests = [
            msgspec.structs.replace(e.request, traceparent=traceparent) if traceparent else e.request for e in events
        ]
        results: list[PublishResult]
        if len(requests) == 1:
            results = [await runtime.group_commit.publish(caller.app.tenant_id, caller.app_id, requests[0])]
        else:
            results = await runtime.publisher.publish_many(caller.app.tenant_id, caller.app_id, requests)
        runtime.notify_published()
        runtime.metrics.message_in(caller.app_id, sum(1 for r in results if not r.duplicate))
        if span.is_recording():
            span.set_attributes(
                {
                    "message_id": [r.id for r in results],
                    "channel": sorted({c for r in requests for c in r.channels}),
                    "event": [r.event for r in requests],
                    "http.response.status_code": 200,
                }
            )


async def _trigger(
    runtime: Runtime, request: Req, parse: Callable[[bytes], list[Event]], route: str
) -> list[tuple[Event, list[dict[str, int]]]] | None:
    """Read, authenticate, check and publish; the events with their attributes (None: no info asked)."""
    arrived = time.time_ns()
    parsed = _parsed(parse, await request.body())
    # The push rate is taken in the same cache round trip as the replay check: one per event.
    cost = len(parsed) if isinstance(parsed, list) and runtime.push_enabled else 0
    caller, _ = await _caller(runtime, request, PUSH, cost)
    _check_enabled(runtime)
    if isinstance(parsed, ApiError):
        raise parsed
    limit = caller.app.limits.max_payload_bytes
    for e in parsed:
        if len(e.request.data) > limit:
            raise ApiError(413, "payload_too_large", f"event data is over this app's {limit} bytes (as JSON)")
    await _publish(runtime, request, route, arrived, caller, parsed)
    if not any(e.info for e in parsed):
        return None
    out = []
    for e in parsed:
        pairs = list(zip(e.channels, e.request.channels, strict=True))
        attrs = await _attributes(runtime.pusher, caller.app_id, pairs, e.info) if e.info else [{} for _ in pairs]
        out.append((e, attrs))
    return out


def _channel(name: str) -> str:
    platform = platform_channel(name)
    if platform is None:
        raise bad_request(f"invalid channel name {name!r}")
    return platform


# -- routes --------------------------------------------------------------------------------------
# Litestar handlers, not raw ASGI as the native push routes: Litestar's @asgi routes take no path
# parameters on HTTP requests (its router looks them up under the method), and these paths carry them.


@post("/apps/{app_id:str}/events", name="pusher_events", status_code=200)
async def trigger_events(request: Req, runtime: Runtime, app_id: str) -> Response[bytes]:
    """POST /apps/{app_id}/events: one event to 1..100 channels; `{}`, or with `info` the
    attributes of each channel: `{"channels": {name: {...}}}`."""
    done = await _trigger(runtime, request, parse_trigger, "/apps/{app_id}/events")
    if done is None:
        return _json({})
    e, attrs = done[0]
    return _json({"channels": dict(zip(e.channels, attrs, strict=True))})


@post("/apps/{app_id:str}/batch_events", name="pusher_batch_events", status_code=200)
async def trigger_batch(request: Req, runtime: Runtime, app_id: str) -> Response[bytes]:
    """POST /apps/{app_id}/batch_events: up to 10 events, all or none published; `{}`, or with any
    `info` `{"batch": [attributes of item 0's channel, ...]}` in the request's order."""
    done = await _trigger(runtime, request, parse_batch, "/apps/{app_id}/batch_events")
    if done is None:
        return _json({})
    return _json({"batch": [attrs[0] for _, attrs in done]})


@get("/apps/{app_id:str}/channels", name="pusher_channels")
async def list_channels(request: Req, runtime: Runtime, app_id: str) -> Response[bytes]:
    """GET /apps/{app_id}/channels?filter_by_prefix=&info=: the occupied channels."""
    caller, req = await _caller(runtime, request, READ)
    prefix = req.params.get("filter_by_prefix", "")
    info = parse_info(req.params.get("info"))
    if USER_COUNT in info and not prefix.startswith("presence-"):
        raise bad_request("info=user_count needs filter_by_prefix=presence-")
    occupied = await runtime.pusher.occupied(caller.app_id)
    listed = [
        (pusher_channel(p), p)
        for p, count in sorted(occupied.items())
        if count > 0 and is_listed(p) and pusher_channel(p).startswith(prefix)
    ]
    attrs: list[dict[str, int]] = [{} for _ in listed]
    if info:
        attrs = await _attributes(runtime.pusher, caller.app_id, listed, info)
    return _json({"channels": {name: a for (name, _), a in zip(listed, attrs, strict=True)}})


@get("/apps/{app_id:str}/channels/{channel_name:str}", name="pusher_channel")
async def channel_info(request: Req, runtime: Runtime, app_id: str, channel_name: str) -> Response[bytes]:
    """GET /apps/{app_id}/channels/{name}?info=: `{"occupied": bool, ...attributes}`."""
    caller, req = await _caller(runtime, request, READ)
    platform = _channel(channel_name)
    info = parse_info(req.params.get("info"))
    if USER_COUNT in info and not is_presence(channel_name):
        raise bad_request("user_count is for presence- channels only")
    count = (await runtime.pusher.occupied(caller.app_id)).get(platform, 0)
    answer: dict[str, Any] = {"occupied": count > 0}
    if info:
        answer.update((await _attributes(runtime.pusher, caller.app_id, [(channel_name, platform)], info))[0])
    return _json(answer)


@get("/apps/{app_id:str}/channels/{channel_name:str}/users", name="pusher_users")
async def channel_users(request: Req, runtime: Runtime, app_id: str, channel_name: str) -> Response[bytes]:
    """GET /apps/{app_id}/channels/{name}/users: a presence channel's users, each once."""
    caller, _ = await _caller(runtime, request, READ)
    platform = _channel(channel_name)
    if not is_presence(channel_name):
        raise bad_request("users are listed for presence- channels only")
    members = await runtime.pusher.members(caller.app_id, platform)
    return _json({"users": [{"id": user_id} for user_id in members]})


async def _terminate(request: Req, runtime: Runtime, user_id: str) -> Response[bytes]:
    caller, _ = await _caller(runtime, request, PUSH)
    if not is_user_id(user_id):
        raise bad_request(f"invalid user id {user_id!r}")
    await runtime.pusher.terminate(caller.app_id, user_id)
    return _json({})


@post("/apps/{app_id:str}/users/{user_id:str}/terminate_connections", name="pusher_terminate", status_code=200)
async def terminate_connections(request: Req, runtime: Runtime, app_id: str, user_id: str) -> Response[bytes]:
    """POST /apps/{app_id}/users/{user_id}/terminate_connections: close every Pusher connection
    signed in as the user, on every instance; `{}`."""
    return await _terminate(request, runtime, user_id)


@post("/users/{user_id:str}/terminate_connections", name="pusher_terminate_unprefixed", status_code=200)
async def terminate_connections_unprefixed(request: Req, runtime: Runtime, user_id: str) -> Response[bytes]:
    """The Python library (3.3.3) posts here, without /apps/{app_id}, and signs this path: the app
    is its auth_key's."""
    return await _terminate(request, runtime, user_id)


ROUTES: list[HTTPRouteHandler] = [
    trigger_events,
    trigger_batch,
    list_channels,
    channel_info,
    channel_users,
    terminate_connections,
    terminate_connections_unprefixed,
]
