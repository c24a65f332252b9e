"""The running instance's composition: settings, backends and the services built on them.

Built by create_app (never at import time) and handed to handlers through dependency injection.
Start order: backends → registry entry → outbox relay → router → liveness ticker; stop reverses
it after closing every client with 4500 so they resume elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

from pushwire import __version__
from pushwire.accounts.service import AccountService
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.group_commit import GroupCommit
from pushwire.messaging.history import History
from pushwire.messaging.hot_history import HotHistory
from pushwire.messaging.publish import Publisher
from pushwire.messaging.relay import OutboxRelay
from pushwire.messaging.retention import RetentionSweeper
from pushwire.metrics import Metrics
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
from pushwire.registry.base import InstanceInfo, Watch, WatchEvent
from pushwire.registry.config import LiveConfig
from pushwire.settings import Settings
from pushwire.tenants.auth import ServerAuthenticator
from pushwire.tenants.changes import announcer, cache_stamper
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tracing.delivery import RouteTracer
from pushwire.tracing.provider import Tracing
from pushwire.wiring import Backends, build_backends, close_backends, start_backends

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    backends: Backends
    tenancy: TenancyService
    accounts: AccountService
    box: SecretBox
    auth: ServerAuthenticator
    publisher: Publisher
    # The push API's single pushes: concurrent ones of an app share a transaction.
    group_commit: GroupCommit
    history: History
    presence: PresenceStore
    tokens: ClientTokenVerifier
    hub: Hub
    connections: Connections
    relay: OutboxRelay
    router: Router
    poller: Poller
    config: LiveConfig
    # This instance's TracerProvider (never the global one), span store and ack tracer.
    tracing: Tracing
    # Acks made here, told to the user's connections on the other instances.
    read_sync: ReadSync
    # Deletes messages past their app's retention (one instance at a time, under a registry lock).
    retention: RetentionSweeper
    # Change notices (key revoked, app or tenant changed): close this instance's sessions with 4001.
    revocation: Revocation
    # Wakes the outbox relay: set by the rows the Publisher hands it, and by notify_published.
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Counters for /metrics and the queue-depth page; hooks in the push API, router and error handlers.
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    version: str = __version__
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _watches: list[Watch] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None) -> Runtime:
        backends = backends or build_backends(settings)
        box = SecretBox(settings.secret_key)
        db, cache = backends.database, backends.cache
        epochs = EpochSeed(settings.secret_key)
        history = History(db, epochs)
        hot = HotHistory(cache)
        presence = PresenceStore(db, cache)
        tokens = ClientTokenVerifier(db, box)
        # The once-a-second tick also closes connections whose token expired (4001).
        hub = Hub(expired=tokens.expired)
        wakeup = asyncio.Event()
        metrics = Metrics()
        read_sync = ReadSync(backends.bus, hub, settings.kafka_topic_prefix, settings.instance_id)
        tracing = Tracing(settings, cache)
        auth = ServerAuthenticator(db, box, cache, settings.trusted_networks)
        revocation = Revocation(backends.registry, hub, tokens, forget=(auth.forget_app,))
        tracer = tracing.tracer
        relay = OutboxRelay(
            db, backends.bus, hot, backends.registry, wakeup, settings.kafka_topic_prefix, tracer, settings.instance_id
        )
        # Each commit's outbox rows go straight to this instance's relay (no re-read).
        publisher = Publisher(db, epochs, observer=tracing.commits, handoff=relay.hand_off)
        connections = Connections(
            hub,
            Recovery(history, hot),
            AckStore(db, cache),
            presence,
            settings.instance_id,
            settings.heartbeat,
            ack_tracer=tracing.acks,
        )
        return cls(
            settings=settings,
            backends=backends,
            # Its changes restamp the app in the cache (cached server keys are reloaded on their next
            # request, on every instance), then go through the registry to every instance.
            tenancy=TenancyService(
                db, box, settings.limit_maxima, on_change=announcer(cache_stamper(cache), revocation.publish)
            ),
            accounts=AccountService(db),
            box=box,
            auth=auth,
            publisher=publisher,
            group_commit=GroupCommit(publisher, on_transaction=metrics.push_transaction),
            history=history,
            presence=presence,
            tokens=tokens,
            hub=hub,
            connections=connections,
            poller=Poller(connections, CursorCodec(settings.secret_key)),
            config=LiveConfig(backends.registry, {"heartbeat": settings.heartbeat, "push_enabled": True}),
            relay=relay,
            router=Router(
                backends.bus,
                hub,
                settings.kafka_topic_prefix,
                group=f"router-{settings.instance_id}",
                metrics=metrics,
                tracer=RouteTracer(tracer, tracing.acks, settings.instance_id),
            ),
            tracing=tracing,
            read_sync=read_sync,
            retention=RetentionSweeper(db, backends.registry, max_retention_days=settings.limit_maxima.retention_days),
            revocation=revocation,
            outbox_wakeup=wakeup,
            metrics=metrics,
        )

    def notify_published(self) -> None:
        # Handed-off rows already woke the relay; it polls only where the Publisher cannot hand off.
        self.relay.notify()

    def instance_info(self) -> InstanceInfo:
        return InstanceInfo(
            id=self.settings.instance_id,
            address=self.settings.advertise_address,
            version=self.version,
            started_at=self.started_at,
            connections=self.hub.count(),
        )

    async def start(self) -> None:
        await start_backends(self.backends)
        await self.tracing.start()
        await self.backends.registry.register(self.instance_info(), ttl=self.settings.instance_ttl)
        # Routes left by an earlier run of this instance id are stale.
        await self.presence.remove_instance(self.settings.instance_id)
        self.config.on_change(self._config_changed)
        await self.config.start()
        self._watches.append(await self.backends.registry.watch_prefix("instances/", self._instance_event))
        await self.revocation.start()
        await self.relay.start()
        self.router.read_sync = self.connections.read_sync = self.read_sync
        await self.read_sync.start()
        await self.router.start()
        await self.retention.start()
        self._tasks.append(asyncio.create_task(self._liveness(), name="liveness"))

    async def stop(self) -> None:
        self.draining = True
        self.hub.close_all(Close.RECONNECT, "server shutting down; reconnect and resume")
        for watch in self._watches:
            with contextlib.suppress(Exception):
                await watch.cancel()
        with contextlib.suppress(Exception):
            await self.config.stop()
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
            await self.retention.stop()
            await self.router.stop()
            await self.read_sync.stop()
            await self.relay.stop()
            await self.presence.remove_instance(self.settings.instance_id)
            await self.backends.registry.deregister()
        except Exception:
            log.exception("error while stopping")
        finally:
            with contextlib.suppress(Exception):
                await self.tracing.stop()  # last spans written before the cache closes
            await close_backends(self.backends)

    @property
    def heartbeat(self) -> int:
        """The one source of the heartbeat (WebSocket, SSE, liveness): live config, validated there."""
        value = self.config.get("heartbeat")
        return value if isinstance(value, int) and 1 <= value <= 600 else self.settings.heartbeat

    @property
    def push_enabled(self) -> bool:
        return bool(self.config.get("push_enabled"))

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
        while True:
            heartbeat = self.heartbeat  # live config: may change while running (always 1..600)
            await asyncio.sleep(min(1.0, heartbeat / 2))
            try:
                self.hub.tick(heartbeat)
                if loop.time() >= next_touch:
                    next_touch = loop.time() + heartbeat
                    await self.presence.touch_instance(self.settings.instance_id)
                    # Polling clients that stopped polling, and routes of instances that died.
                    await self.presence.sweep(dt.timedelta(seconds=max(60, 3 * heartbeat)))
                    await self.backends.registry.update(self.instance_info())
            except Exception:
                log.exception("liveness tick failed")
