"""The Pusher protocol's part of a running instance (`runtime.pusher`): its connections' frame
handler, and the cluster-wide state the HTTP API reads (channel counts, presence members), plus
`terminate`, told to every instance through the registry as the platform's change notices are.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import msgspec

from pushwire.pusher import frames as f
from pushwire.pusher.announcer import Publish
from pushwire.pusher.members import Members
from pushwire.pusher.occupancy import LiveInstances, Occupancy
from pushwire.pusher.session import PusherSession
from pushwire.pusher.sockets import PusherSockets
from pushwire.realtime.connections import Connections
from pushwire.registry.base import Registry, Watch, WatchEvent
from pushwire.tenants.auth import ServerAuthenticator

log = logging.getLogger(__name__)

TERMINATE_PREFIX = "pusher/terminate/"
INSTANCES_PREFIX = "instances/"  # the registry's own: an instance's key is deleted when it leaves


class Terminate(msgspec.Struct, frozen=True):
    user_id: str
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)  # two in a row are two events


class PusherService:
    def __init__(
        self,
        connections: Connections,
        registry: Registry,
        auth: ServerAuthenticator,
        publish: Publish,
        instance_id: str,
        heartbeat: Any,
    ) -> None:
        live = LiveInstances(registry, instance_id)
        cache = auth.cache
        self.hub = connections.hub
        self.registry = registry
        self.auth = auth
        self.occupancy = Occupancy(self.hub, cache, live)
        self.members_store = Members(cache, live)
        self.sockets = PusherSockets(connections, self.members_store, publish, heartbeat)
        self.instance_id = instance_id
        self._watches: list[Watch] = []

    async def start(self) -> None:
        self._watches.append(await self.registry.watch_prefix(TERMINATE_PREFIX, self._terminate_event))
        self._watches.append(await self.registry.watch_prefix(INSTANCES_PREFIX, self._instance_event))
        await self.occupancy.start()

    async def stop(self) -> None:
        for watch in self._watches:
            with contextlib.suppress(Exception):
                await watch.cancel()
        self._watches.clear()
        await self.occupancy.stop()
        await self.sockets.announcer.stop()

    # -- what the HTTP API reads ---------------------------------------------
    async def occupied(self, app_id: str) -> dict[str, int]:
        """Platform channel → subscribers, cluster-wide (personal channels and `broadcast` left out)."""
        return await self.occupancy.counts(app_id)

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        """A presence channel's users (user id → user_info or None), cluster-wide."""
        return await self.members_store.users(app_id, channel)

    async def terminate(self, app_id: str, user_id: str) -> None:
        """Every Pusher connection signed in as the user, on every instance: 4009."""
        await self.registry.put(TERMINATE_PREFIX + app_id, msgspec.json.encode(Terminate(user_id=user_id)))

    async def _terminate_event(self, event: WatchEvent) -> None:
        if event.kind != "put" or not event.value:
            return
        try:
            notice = msgspec.json.decode(event.value, type=Terminate)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignored a malformed notice under %s", event.key)
            return
        self.end_user(event.key.removeprefix(TERMINATE_PREFIX), notice.user_id)

    async def _instance_event(self, event: WatchEvent) -> None:
        """An instance's lease ended (crash or clean leave): its presence members here are announced gone."""
        self.members_store.live.expire()  # an instance came or went: read the registry again
        if event.kind == "delete" and event.key.removeprefix(INSTANCES_PREFIX) != self.instance_id:
            removed = await self.sockets.sweep_departed()
            if removed:
                log.info("announced %d members of departed instance %s gone", removed, event.key)

    def end_user(self, app_id: str, user_id: str) -> int:
        ended = 0
        for session in tuple(self.hub.sessions.values()):
            if isinstance(session, PusherSession) and session.app_id == app_id and session.signed_in == user_id:
                session.end(f.Code.UNAUTHORIZED, "connections terminated by the app")
                ended += 1
        return ended

    # -- change notices (realtime/revocation.py) ----------------------------
    async def recheck(self, app_id: str) -> int:
        """The app or its keys changed: close its Pusher connections whose key no longer holds."""
        closed = 0
        for session in tuple(self.hub.sessions.values()):
            if not isinstance(session, PusherSession) or session.app_id != app_id or session.closing is not None:
                continue
            try:
                entry = await self.auth.key_entry(session.entry.key_id)
            except Exception:  # a database hiccup: keep the session, the next notice re-checks
                log.exception("could not re-check Pusher connection %s", session.id)
                continue
            if entry is None:
                session.end(f.Code.UNKNOWN_KEY, "the app key was revoked")
            elif not entry.app.enabled or entry.tenant_disabled:
                session.end(f.Code.APP_DISABLED, "this app is disabled")
            else:
                session.entry = entry
                continue
            closed += 1
        return closed
