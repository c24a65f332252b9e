"""The running instance: the roles of pushwire.roles over one Shared bundle.

Built by create_app (never at import time) and handed to handlers through dependency injection.
Start order: backends → registry entry → api → outbox relay → realtime (router, liveness); stop
reverses it after closing every client with 4500 so they resume elsewhere. With `relay=False`
(`pushwire run --no-relay`) the Publisher hands its rows to no one: a relay in another process
(`pushwire relay`) or another instance sends them, found by polling.

The properties keep the names handlers and tests use (`runtime.hub`, `runtime.publisher`, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pushwire import __version__
from pushwire.accounts.service import AccountService
from pushwire.messaging.group_commit import GroupCommit
from pushwire.messaging.history import History
from pushwire.messaging.publish import Publisher
from pushwire.messaging.relay import OutboxRelay
from pushwire.messaging.retention import RetentionSweeper
from pushwire.metrics import Metrics
from pushwire.presence.store import PresenceStore
from pushwire.pusher.service import PusherService
from pushwire.realtime.connections import Connections
from pushwire.realtime.hub import Hub
from pushwire.realtime.polling import Poller
from pushwire.realtime.read_sync import ReadSync
from pushwire.realtime.revocation import Revocation
from pushwire.realtime.router import Router
from pushwire.realtime.tokens import ClientTokenVerifier
from pushwire.registry.base import InstanceInfo
from pushwire.registry.config import LiveConfig
from pushwire.roles.api import ApiRole
from pushwire.roles.realtime import RealtimeRole
from pushwire.roles.relay import RelayRole, utc_now
from pushwire.roles.shared import Shared
from pushwire.settings import Settings
from pushwire.tenants.auth import ServerAuthenticator
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tracing.provider import Tracing
from pushwire.wiring import Backends

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    shared: Shared
    api_role: ApiRole
    realtime_role: RealtimeRole
    # None with relay=False: this instance's commits are sent by a relay elsewhere.
    relay_role: RelayRole | None
    # The Pusher Channels protocol (pushwire/pusher): its sockets and cluster-wide channel state.
    pusher: PusherService
    draining: bool = False
    version: str = __version__
    started_at: str = field(default_factory=utc_now)

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None, relay: bool = True) -> Runtime:
        shared = Shared.build(settings, backends)
        relay_role = RelayRole.build(settings, shared.backends, shared.tracing) if relay else None
        # Each commit's outbox rows go straight to this instance's relay (no re-read).
        api = ApiRole.build(shared, handoff=relay_role.relay.hand_off if relay_role is not None else None)
        realtime = RealtimeRole.build(shared, forget=(api.auth.forget_app,))
        pusher = PusherService(
            realtime.connections,
            shared.backends.registry,
            api.auth,
            api.group_commit.publish,
            settings.instance_id,
            lambda: realtime.heartbeat,
        )
        realtime.revocation.also = pusher.recheck
        runtime = cls(shared, api, realtime, relay_role, pusher)
        runtime.realtime_role.on_beat = runtime._beat
        if relay_role is not None:
            # Local subscribers get what this relay sends at once; the bus copy is then dropped.
            relay_role.relay.local = runtime.realtime_role.router.deliver_committed
        return runtime

    def notify_published(self) -> None:
        # Handed-off rows already woke the relay; it polls only where the Publisher cannot hand off.
        # Without a relay here, the one elsewhere polls every 50 ms anyway.
        if self.relay_role is not None:
            self.relay_role.relay.notify()

    def instance_info(self) -> InstanceInfo:
        return InstanceInfo(
            id=self.settings.instance_id,
            address=self.settings.advertise_address,
            version=self.version,
            started_at=self.started_at,
            connections=self.hub.count(),
            roles=("api", "realtime", "relay") if self.relay_role is not None else ("api", "realtime"),
        )

    async def start(self) -> None:
        await self.shared.start()
        await self.backends.registry.register(self.instance_info(), ttl=self.settings.instance_ttl)
        await self.api_role.start()
        if self.relay_role is not None:
            await self.relay_role.start()
        await self.realtime_role.start()
        await self.pusher.start()

    async def stop(self) -> None:
        self.draining = True
        stops = [self.realtime_role.stop, self.pusher.stop, self.api_role.stop]
        if self.relay_role is not None:
            stops.append(self.relay_role.stop)
        try:
            # One failing step must not leave the later ones running over closed backends.
            for stop in [*stops, self.backends.registry.deregister]:
                try:
                    await stop()
                except Exception:
                    log.exception("error while stopping")
        finally:
            await self.shared.stop()

    async def _beat(self) -> None:
        await self.backends.registry.update(self.instance_info())

    @property
    def heartbeat(self) -> int:
        return self.realtime_role.heartbeat

    @property
    def push_enabled(self) -> bool:
        return self.api_role.push_enabled

    # -- shared --------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.shared.settings

    @property
    def backends(self) -> Backends:
        return self.shared.backends

    @property
    def tracing(self) -> Tracing:
        return self.shared.tracing

    @property
    def metrics(self) -> Metrics:
        return self.shared.metrics

    @property
    def box(self) -> SecretBox:
        return self.shared.box

    @property
    def config(self) -> LiveConfig:
        return self.shared.config

    # -- api -----------------------------------------------------------------------------------
    @property
    def tenancy(self) -> TenancyService:
        return self.api_role.tenancy

    @property
    def accounts(self) -> AccountService:
        return self.api_role.accounts

    @property
    def auth(self) -> ServerAuthenticator:
        return self.api_role.auth

    @property
    def publisher(self) -> Publisher:
        return self.api_role.publisher

    @property
    def group_commit(self) -> GroupCommit:
        return self.api_role.group_commit

    @property
    def history(self) -> History:
        return self.api_role.history

    # -- realtime ------------------------------------------------------------------------------
    @property
    def presence(self) -> PresenceStore:
        return self.realtime_role.presence

    @property
    def tokens(self) -> ClientTokenVerifier:
        return self.realtime_role.tokens

    @property
    def hub(self) -> Hub:
        return self.realtime_role.hub

    @property
    def connections(self) -> Connections:
        return self.realtime_role.connections

    @property
    def poller(self) -> Poller:
        return self.realtime_role.poller

    @property
    def router(self) -> Router:
        return self.realtime_role.router

    @property
    def read_sync(self) -> ReadSync:
        return self.realtime_role.read_sync

    @property
    def revocation(self) -> Revocation:
        return self.realtime_role.revocation

    # -- relay (None with relay=False) ---------------------------------------------------------
    @property
    def relay(self) -> OutboxRelay | None:
        return self.relay_role.relay if self.relay_role is not None else None

    @property
    def retention(self) -> RetentionSweeper | None:
        return self.relay_role.retention if self.relay_role is not None else None
