"""The realtime role: client sessions (WebSocket, long-poll, SSE), the router that feeds them from
the bus, presence routes, read sync, revocation and the liveness loop.

Start order: stale presence routes → instance watch → revocation → read sync → router → liveness
ticker; stop closes every client with 4500 first, so they resume elsewhere, then reverses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pushwire.messaging.history import History
from pushwire.messaging.hot_history import HotHistory
from pushwire.presence.slots import RouteSlots
from pushwire.presence.store import PresenceStore
from pushwire.realtime.acks import AckStore
from pushwire.realtime.connections import Connections
from pushwire.realtime.hub import Hub
from pushwire.realtime.polling import Poller
from pushwire.realtime.protocol import Close
from pushwire.realtime.read_sync import ReadSync
from pushwire.realtime.recovery import Recovery
from pushwire.realtime.revocation import Revocation
from pushwire.realtime.router import Router
from pushwire.realtime.tokens import ClientTokenVerifier
from pushwire.realtime.transports.cursor import CursorCodec
from pushwire.registry.base import Watch, WatchEvent
from pushwire.roles.shared import Shared
from pushwire.tracing.delivery import RouteTracer

log = logging.getLogger(__name__)


@dataclass
class RealtimeRole:
    shared: Shared
    hub: Hub
    tokens: ClientTokenVerifier
    presence: PresenceStore
    connections: Connections
    poller: Poller
    router: Router
    # Acks made here, told to the user's connections on the other instances.
    read_sync: ReadSync
    # Change notices (key revoked, app or tenant changed): close this instance's sessions with 4001.
    revocation: Revocation
    # Awaited by the liveness loop once a heartbeat period (Runtime: refresh the registry entry).
    on_beat: Callable[[], Awaitable[None]] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _watches: list[Watch] = field(default_factory=list)

    @classmethod
    def build(cls, shared: Shared, forget: Sequence[Callable[[str], None]] = ()) -> RealtimeRole:
        """`forget`: other in-process caches of an app's credentials, dropped on its change notices
        (Runtime passes the API role's server keys)."""
        settings, backends = shared.settings, shared.backends
        db, cache, instance_id = backends.database, backends.cache, settings.instance_id
        tokens = ClientTokenVerifier(db, shared.box)
        # The once-a-second tick also closes connections whose token expired (4001).
        hub = Hub(expired=tokens.expired)
        presence = PresenceStore(db, cache)
        connections = Connections(
            hub,
            Recovery(History(db, shared.epochs), HotHistory(cache)),
            AckStore(db, cache),
            presence,
            RouteSlots(db, instance_id),
            instance_id,
            settings.heartbeat,
            ack_tracer=shared.tracing.acks,
        )
        read_sync = ReadSync(backends.bus, hub, settings.kafka_topic_prefix, instance_id)
        router = Router(
            backends.bus,
            hub,
            settings.kafka_topic_prefix,
            group=f"router-{instance_id}",
            metrics=shared.metrics,
            tracer=RouteTracer(shared.tracing.tracer, shared.tracing.acks, instance_id),
        )
        router.read_sync = connections.read_sync = read_sync
        role = cls(
            shared=shared,
            hub=hub,
            tokens=tokens,
            presence=presence,
            connections=connections,
            poller=Poller(connections, CursorCodec(settings.secret_key)),
            router=router,
            read_sync=read_sync,
            revocation=Revocation(backends.registry, hub, tokens, forget=forget),
        )
        shared.config.on_change(role._config_changed)
        return role

    @property
    def heartbeat(self) -> int:
        """The one source of the heartbeat (WebSocket, SSE, liveness): live config, validated there."""
        value = self.shared.config.get("heartbeat")
        return value if isinstance(value, int) and 1 <= value <= 600 else self.shared.settings.heartbeat

    async def start(self) -> None:
        registry = self.shared.backends.registry
        # Routes left by an earlier run of this instance id are stale.
        await self.presence.remove_instance(self.shared.settings.instance_id)
        self._watches.append(await registry.watch_prefix("instances/", self._instance_event))
        await self.revocation.start()
        await self.read_sync.start()
        await self.router.start()
        self._tasks.append(asyncio.create_task(self._liveness(), name="liveness"))

    async def stop(self) -> None:
        self.hub.close_all(Close.RECONNECT, "server shutting down; reconnect and resume")
        for watch in self._watches:
            with contextlib.suppress(Exception):
                await watch.cancel()
        with contextlib.suppress(Exception):
            await self.revocation.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while self.hub.sessions:
                    await asyncio.sleep(0.05)
        try:
            await self.router.stop()
            await self.read_sync.stop()
            await self.connections.slots.stop()
            await self.presence.remove_instance(self.shared.settings.instance_id)
        except Exception:
            log.exception("error while stopping the realtime role")

    def _config_changed(self, key: str, value: object) -> None:
        # LiveConfig passes only values its schema accepted (or the default, on delete).
        if key == "heartbeat":
            self.connections.heartbeat = self.heartbeat
        log.info("config %s = %r applied", key, value)

    async def _instance_event(self, event: WatchEvent) -> None:
        """An instance's lease ended (crash or clean leave): its presence routes go with it."""
        if event.kind == "delete":
            instance_id = event.key.removeprefix("instances/")
            removed = await self.presence.remove_instance(instance_id)
            if removed:
                log.info("removed %d presence routes of departed instance %s", removed, instance_id)

    async def _liveness(self) -> None:
        """Once a second: heartbeats and silent clients; each heartbeat period: presence last_seen."""
        loop = asyncio.get_running_loop()
        next_touch = loop.time() + self.heartbeat
        instance_id = self.shared.settings.instance_id
        while True:
            heartbeat = self.heartbeat  # live config: may change while running (always 1..600)
            await asyncio.sleep(min(1.0, heartbeat / 2))
            try:
                self.hub.tick(heartbeat)
                if loop.time() >= next_touch:
                    next_touch = loop.time() + heartbeat
                    await self.presence.touch_instance(instance_id)
                    # Polling clients that stopped polling, and routes of instances that died.
                    await self.presence.sweep(dt.timedelta(seconds=max(60, 3 * heartbeat)))
                    if self.on_beat is not None:
                        await self.on_beat()
            except Exception:
                log.exception("liveness tick failed")
