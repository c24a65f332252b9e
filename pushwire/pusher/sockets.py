"""What happens on a Pusher connection (notes §1–3): open, frames, close.

Frames that need no I/O (ping, pong, a bad frame, unsubscribe from a non-presence channel) are
handled at once; the others (subscribe, signin, client events, presence leaves) return a
coroutine that the connection's inbox awaits in order, as for native frames (realtime/inbox.py).
Subscriptions start at the live edge, so a public or private subscribe reads nothing remote;
presence joins read and write the cache (members.py) and announce the member with a durable
message, as client events are, so every instance's subscribers get them in channel order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import compact
from pushwire.messaging.publish import PublishRequest
from pushwire.names import is_user_id, personal_channel
from pushwire.pusher import frames as f
from pushwire.pusher import names
from pushwire.pusher.announcer import Announcer, Publish
from pushwire.pusher.members import MAX_USER_INFO_BYTES, ChannelFull, Members
from pushwire.pusher.session import (
    CLIENT_EVENT_BURST,
    CLIENT_EVENT_RATE,
    SUBSCRIBE_BURST,
    SUBSCRIBE_RATE,
    PusherSession,
)
from pushwire.realtime.connections import Connections
from pushwire.realtime.protocol import BAD_FRAMES_PER_MINUTE, MAX_SUBSCRIPTIONS, Close
from pushwire.realtime.session import Transport
from pushwire.realtime.tokens import ClientIdentity
from pushwire.tenants.key_cache import KeyEntry

log = logging.getLogger(__name__)

# Cache channels replay the last event published within this long (Pusher: "up to 30 minutes").
CACHE_TTL = 1800.0
_CACHE_LOOKBACK = 10


def socket_id() -> str:
    """`\\d+\\.\\d+` as the Pusher libraries require, unguessable enough that no client can reuse
    another's channel auth (~66 random bits)."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def identity_of(entry: KeyEntry, socket: str) -> ClientIdentity:
    """The platform identity of a Pusher connection: anonymous (its own user, named by its socket
    id) until it signs in, under the app's connection limits."""
    app = entry.app
    return ClientIdentity(
        app_id=app.app_id,
        tenant_id=app.tenant_id,
        user_id=socket,
        channels=(),
        info=None,
        expires_at=math.inf,
        max_connections=app.limits.max_connections,
        max_connections_per_user=app.limits.max_connections_per_user,
        allowed_origins=tuple(app.allowed_origins),
    )


class PusherSockets:
    def __init__(
        self,
        connections: Connections,
        members: Members,
        publish: Publish,
        activity_timeout: Callable[[], int],
    ) -> None:
        self.connections = connections
        self.hub = connections.hub
        self.recovery = connections.recovery
        self.members = members
        self.publish = publish
        self.announcer = Announcer(publish)  # member events: retried through a database outage
        self.activity_timeout = activity_timeout
        self._bad: dict[str, deque[float]] = {}

    # -- open and close -------------------------------------------------------
    def open(self, entry: KeyEntry, protocol: int, transport: Transport, socket: str) -> PusherSession:
        """The session of an admitted connection, with `connection_established` queued."""
        session = PusherSession(socket, entry, protocol, identity_of(entry, socket), transport)
        self.hub.attach(session)
        established = {"socket_id": socket, "activity_timeout": self.activity_timeout()}
        session.enqueue(f.frame("pusher:connection_established", established))
        session.start()
        return session

    async def close(self, session: Any) -> None:
        assert isinstance(session, PusherSession)
        self._bad.pop(session.id, None)
        for channel in list(session.members):
            await self._leave(session, channel)
        await self.connections.close(session)

    # -- frames ---------------------------------------------------------------
    def receive(self, session: Any, text: str | None, data: bytes | None) -> Coroutine[Any, Any, None] | None:
        assert isinstance(session, PusherSession)
        raw = text.encode() if text is not None else (data or b"")
        if len(raw) > f.MAX_FRAME_BYTES:
            session.close_soon(Close.TOO_BIG, "frame over 64 KiB")
            return None
        if text is None:
            self.bad_frame(session, "frames are JSON text, not binary")
            return None
        session.last_received = time.monotonic()
        try:
            frame = f.INCOMING.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.bad_frame(session, f"not a Pusher frame: {exc}")
            return None
        event = frame.event
        if event == "pusher:ping":
            session.enqueue(f.PONG)
        elif event == "pusher:pong":
            pass
        elif event == "pusher:subscribe":
            try:
                sub = f.SUBSCRIBE.decode(frame.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.bad_frame(session, f"pusher:subscribe: {exc}")
                return None
            return self.subscribe(session, sub)
        elif event == "pusher:unsubscribe":
            try:
                channel = f.SUBSCRIBE.decode(frame.data).channel
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.bad_frame(session, f"pusher:unsubscribe: {exc}")
                return None
            return self.unsubscribe(session, channel)
        elif event == "pusher:signin":
            try:
                signin = f.SIGNIN.decode(frame.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                session.end(f.Code.UNAUTHORIZED, f"pusher:signin: {exc}")
                return None
            return self.signin(session, signin)
        elif event.startswith("client-"):
            return self.client_event(session, event, frame.channel, frame.data)
        else:
            self.bad_frame(session, f"unknown event {event[:64]!r}")
        return None

    def bad_frame(self, session: PusherSession, message: str, channel: str | None = None) -> None:
        """A `pusher:error` (code null) that counts towards the malformed-frame budget (over it: 4100)."""
        now = time.monotonic()
        recent = self._bad.setdefault(session.id, deque())
        recent.append(now)
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) > BAD_FRAMES_PER_MINUTE:
            session.close_soon(Close.BAD_FRAMES, "too many malformed or refused frames")
            return
        session.enqueue(f.error(None, message[:200], channel))

    # -- subscriptions --------------------------------------------------------
    async def subscribe(self, session: PusherSession, sub: f.SubscribeData) -> None:
        name = sub.channel
        tokens, at = session.subscribes
        now = time.monotonic()
        tokens = min(float(SUBSCRIBE_BURST), tokens + (now - at) * SUBSCRIBE_RATE)
        if tokens < 1:
            session.subscribes = (tokens, now)
            self.bad_frame(session, f"at most {SUBSCRIBE_RATE:g} subscribe frames a second", name)
            return
        session.subscribes = (tokens - 1, now)
        platform = names.platform_channel(name)
        if platform is None:
            refusal = "too long" if len(name) > names.MAX_CHANNEL else "not a valid channel name"
            session.enqueue(f.subscription_error(name[:200], "LimitReached", f"channel name {refusal}", 4009))
            return
        if platform not in session.subs and len(session.subs) >= MAX_SUBSCRIPTIONS:
            msg = f"at most {MAX_SUBSCRIPTIONS} channels per connection"
            session.enqueue(f.subscription_error(name, "LimitReached", msg, 4009))
            return
        if name.startswith(names.SERVER_TO_USER):
            if session.signed_in is None or platform != personal_channel(session.signed_in):
                msg = "sign in as this user first"
                session.enqueue(f.subscription_error(name, "AuthError", msg, 401))
                return
        elif names.is_private(name):
            signed = f"{session.id}:{name}" + (f":{sub.channel_data}" if names.is_presence(name) else "")
            if not await self._signed_by_app(session, sub.auth or "", signed):
                msg = "The connection is unauthorized: the channel auth does not match"
                session.enqueue(f.subscription_error(name, "AuthError", msg, 401))
                return
        if names.is_presence(name):
            await self._join(session, name, platform, sub.channel_data)
            return
        self.hub.subscribe(session, platform)
        session.finish_subscription(platform, 0, [], f.frame("pusher_internal:subscription_succeeded", {}, name))
        if names.is_cache(name):
            await self._send_cached(session, name, platform)

    async def _signed_by_app(self, session: PusherSession, auth: str, signed: str) -> bool:
        """`auth` is `{key}:{hmac of signed}` by the key the client connected with (Pusher has one
        key per app). Only that key: a client naming other keys must not make us load them."""
        key, _, signature = auth.partition(":")
        if key != session.entry.key_id:
            return False
        return hmac.compare_digest(sign(session.entry.secret, signed), signature)

    async def _join(self, session: PusherSession, name: str, platform: str, channel_data: str | None) -> None:
        try:
            member = f.PRESENCE.decode(channel_data or "")
        except (msgspec.DecodeError, msgspec.ValidationError):
            msg = "presence channels need channel_data with a user_id"
            session.enqueue(f.subscription_error(name, "AuthError", msg, 401))
            return
        user_id = str(member.user_id)
        info = msgspec.json.encode(member.user_info) if member.user_info is not None else None
        if not is_user_id(user_id):
            msg = "user_id must be 1-128 characters of [A-Za-z0-9_-=@,.;]"
            session.enqueue(f.subscription_error(name, "LimitReached", msg, 4009))
            return
        if info is not None and len(info) > MAX_USER_INFO_BYTES:
            msg = f"user_info over {MAX_USER_INFO_BYTES} bytes"
            session.enqueue(f.subscription_error(name, "LimitReached", msg, 4301))
            return
        if name in session.members:  # already a member: answered again, no second join
            await self._leave(session, name)
        self.hub.subscribe(session, platform)
        try:
            users, first, departed = await self.members.join(session.app_id, platform, session.id, user_id, info)
        except ChannelFull:
            self.hub.unsubscribe(session, platform)
            session.enqueue(f.subscription_error(name, "LimitReached", "the presence channel is full", 4100))
            return
        except BackendUnavailable:
            self.hub.unsubscribe(session, platform)
            session.enqueue(f.subscription_error(name, "ServerError", "try again", 500))
            return
        session.members[name] = user_id
        presence = {
            "presence": {"ids": list(users), "hash": {u: i or {} for u, i in users.items()}, "count": len(users)}
        }
        session.finish_subscription(platform, 0, [], f.frame("pusher_internal:subscription_succeeded", presence, name))
        if first:
            added = {"user_id": user_id, "user_info": member.user_info or {}}
            await self._announce(session, platform, "pusher_internal:member_added", added)
        await self._departed(session.identity.tenant_id, session.app_id, platform, departed)
        if names.is_cache(name):
            await self._send_cached(session, name, platform)

    async def unsubscribe(self, session: PusherSession, name: str) -> None:
        platform = names.platform_channel(name)
        if platform is None or platform not in session.subs:
            return  # Pusher answers no unsubscribe, not even a wrong one
        self.hub.unsubscribe(session, platform)
        if name in session.members:
            await self._leave(session, name)

    async def _leave(self, session: PusherSession, name: str) -> None:
        user_id = session.members.pop(name, None)
        platform = names.platform_channel(name)
        if user_id is None or platform is None:
            return
        try:
            last, departed = await self.members.leave(session.app_id, platform, session.id, user_id)
            if last:
                await self._announce(session, platform, "pusher_internal:member_removed", {"user_id": user_id})
            await self._departed(session.identity.tenant_id, session.app_id, platform, departed)
        except BackendUnavailable as exc:
            log.warning("presence leave of %s on %s not announced (%s)", user_id, name, exc)

    async def sweep_departed(self) -> int:
        """Another instance left the registry: the presence channels with members here lose its
        users, announced as `member_removed` (the instance could not: it crashed or was cut off)."""
        channels = {
            (s.identity.tenant_id, s.app_id, platform)
            for s in tuple(self.hub.sessions.values())
            if isinstance(s, PusherSession)
            for name in s.members
            if (platform := names.platform_channel(name)) is not None
        }
        removed = 0
        for tenant_id, app_id, platform in channels:
            try:
                departed = await self.members.sweep(app_id, platform)
            except BackendUnavailable as exc:
                log.warning("presence of departed instances on %s not swept (%s)", platform, exc)
                continue
            await self._departed(tenant_id, app_id, platform, departed)
            removed += len(departed)
        return removed

    async def _departed(self, tenant_id: str, app_id: str, platform: str, users: set[str]) -> None:
        for user_id in sorted(users):
            await self._publish_member(
                tenant_id, app_id, platform, "pusher_internal:member_removed", {"user_id": user_id}
            )

    async def _announce(self, session: PusherSession, platform: str, event: str, data: dict[str, Any]) -> None:
        """A member event of the session's user; its own connection skips it."""
        await self._publish_member(session.identity.tenant_id, session.app_id, platform, event, data, session.id)

    async def _publish_member(
        self, tenant_id: str, app_id: str, platform: str, event: str, data: dict[str, Any], skip: str | None = None
    ) -> None:
        """A member event as a durable message on the channel (every instance, in channel order),
        its data a JSON string as Pusher sends it."""
        body = msgspec.json.encode(msgspec.json.encode(data).decode())
        request = PublishRequest(channels=(platform,), event=event, data=msgspec.Raw(body), socket_id=skip)
        await self.announcer.announce(tenant_id, app_id, request)

    async def _send_cached(self, session: PusherSession, name: str, platform: str) -> None:
        """Cache channels: the last event published (not a client or member event) within
        CACHE_TTL, else `pusher:cache_miss`."""
        cached = None
        try:
            state = (await self.recovery.state(session.app_id, [platform]))[platform]
            if state.top:
                after = max(0, state.top - _CACHE_LOOKBACK)
                page = await self.recovery.page(session.app_id, platform, after, state, state.top - after) or []
                cached = _last_cacheable(page)
        except BackendUnavailable:
            cached = None
        if cached is None:
            session.enqueue(f.frame("pusher:cache_miss", channel=name))
            return
        converted = f.channel_frame(cached)
        session.enqueue(converted.text)

    # -- sign-in --------------------------------------------------------------
    async def signin(self, session: PusherSession, signin: f.SigninData) -> None:
        try:
            user = f.USER_DATA.decode(signin.user_data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            session.end(f.Code.UNAUTHORIZED, "user_data must be a JSON object with a string id")
            return
        if not is_user_id(user.id):
            session.end(f.Code.UNAUTHORIZED, "user id must be 1-128 characters of [A-Za-z0-9_-=@,.;]")
            return
        if not await self._signed_by_app(session, signin.auth, f"{session.id}::user::{signin.user_data}"):
            session.end(f.Code.UNAUTHORIZED, "the sign-in auth does not match")
            return
        if session.signed_in is not None and session.signed_in != user.id:
            session.end(f.Code.UNAUTHORIZED, "already signed in as another user")
            return
        session.signed_in = user.id
        # Server-to-user events reach every connection signed in as the user, subscribed or not.
        personal = personal_channel(user.id)
        if personal not in session.subs:
            self.hub.subscribe(session, personal)
            session.finish_subscription(personal, 0, [], None)
        session.enqueue(f.frame("pusher:signin_success", {"user_data": signin.user_data}, encoded=False))

    # -- client events --------------------------------------------------------
    async def client_event(self, session: PusherSession, event: str, name: str | None, data: msgspec.Raw) -> None:
        refuse = None
        platform = names.platform_channel(name) if name else None
        if name is None or platform is None:
            refuse = "client events need a channel"
        elif not names.allows_client_events(name):
            refuse = "client events are allowed on private and presence channels only"
        elif (sub := session.subs.get(platform)) is None or sub.buffer is not None:
            refuse = "subscribe to the channel before sending client events on it"
        elif not names.is_event(event):
            refuse = f"event names are at most {names.MAX_EVENT} printable characters"
        elif len(data) > f.MAX_DATA_BYTES:
            refuse = f"client event data over {f.MAX_DATA_BYTES} bytes"
        if refuse is None:
            tokens, at = session.client_events
            now = time.monotonic()
            tokens = min(float(CLIENT_EVENT_BURST), tokens + (now - at) * CLIENT_EVENT_RATE)
            if tokens < 1:
                refuse = f"at most {CLIENT_EVENT_RATE:g} client events a second"
            session.client_events = (tokens - 1 if refuse is None else tokens, now)
        if refuse is not None:
            session.enqueue(f.error(f.Code.CLIENT_EVENT_REJECTED, refuse, name))
            return
        assert name is not None and platform is not None
        try:
            body = compact(data)
        except (msgspec.DecodeError, RecursionError):
            session.enqueue(f.error(f.Code.CLIENT_EVENT_REJECTED, "client event data is not JSON", name))
            return
        request = PublishRequest(
            channels=(platform,),
            event=event,
            data=msgspec.Raw(body),
            socket_id=session.id,
            user_id=session.members.get(name),
        )
        try:
            await self.publish(session.identity.tenant_id, session.app_id, request)
        except BackendUnavailable:
            session.enqueue(f.error(f.Code.CLIENT_EVENT_REJECTED, "not delivered: try again", name))


class _Head(msgspec.Struct, frozen=True):
    event: str
    ts: str


_HEAD = msgspec.json.Decoder(_Head)


def _last_cacheable(page: list[str]) -> str | None:
    """The newest message of `page` a cache channel replays: published (not a client or member
    event), at most CACHE_TTL old."""
    for message in reversed(page):
        head = _HEAD.decode(message)
        if head.event.startswith(("client-", "pusher_internal:")):
            continue
        try:
            age = time.time() - dt.datetime.fromisoformat(head.ts).timestamp()
        except ValueError:
            return None
        return message if age <= CACHE_TTL else None
    return None
