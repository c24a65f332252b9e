"""The running instance's composition: settings, backends and the services built on them.

Built by create_app (never at import time) and handed to handlers through dependency injection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from pushwire import __version__
from pushwire.accounts.service import AccountService
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.history import History
from pushwire.messaging.publish import Publisher
from pushwire.presence.store import PresenceStore
from pushwire.registry.base import InstanceInfo
from pushwire.settings import Settings
from pushwire.tenants.auth import ServerAuthenticator
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.wiring import Backends, build_backends, close_backends, start_backends


@dataclass
class Runtime:
    settings: Settings
    backends: Backends
    tenancy: TenancyService
    accounts: AccountService
    box: SecretBox
    auth: ServerAuthenticator
    publisher: Publisher
    history: History
    presence: PresenceStore
    # Set after each commit of new messages, so the outbox relay wakes without polling delay.
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    version: str = __version__
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None) -> Runtime:
        backends = backends or build_backends(settings)
        box = SecretBox(settings.secret_key)
        db = backends.database
        epochs = EpochSeed(settings.secret_key)
        return cls(
            settings=settings,
            backends=backends,
            tenancy=TenancyService(db, box),
            accounts=AccountService(db),
            box=box,
            auth=ServerAuthenticator(db, box, backends.cache, settings.trusted_networks),
            publisher=Publisher(db, epochs),
            history=History(db, epochs),
            presence=PresenceStore(db, backends.cache),
        )

    def notify_published(self) -> None:
        self.outbox_wakeup.set()

    def instance_info(self, connections: int = 0) -> InstanceInfo:
        return InstanceInfo(
            id=self.settings.instance_id,
            address=self.settings.advertise_address,
            version=self.version,
            started_at=self.started_at,
            connections=connections,
        )

    async def start(self) -> None:
        await start_backends(self.backends)
        await self.backends.registry.register(self.instance_info(), ttl=self.settings.instance_ttl)

    async def stop(self) -> None:
        try:
            await self.backends.registry.deregister()
        finally:
            await close_backends(self.backends)
