"""The API role: tenancy and accounts, server-key authentication, the Publisher and its group
commit, history and presence reads. Nothing of it runs in the background: it serves requests.

Without a relay in the same process (`handoff=None`) committed rows wait in the outbox for a
relay elsewhere, which finds them by polling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pushwire.accounts.service import AccountService
from pushwire.messaging.envelope import Committed
from pushwire.messaging.group_commit import GroupCommit
from pushwire.messaging.history import History
from pushwire.messaging.publish import Publisher
from pushwire.presence.store import PresenceStore
from pushwire.roles.shared import Shared
from pushwire.tenants.auth import ServerAuthenticator
from pushwire.tenants.changes import announcer, cache_stamper, registry_publisher
from pushwire.tenants.service import TenancyService


@dataclass
class ApiRole:
    shared: Shared
    tenancy: TenancyService
    accounts: AccountService
    auth: ServerAuthenticator
    publisher: Publisher
    # The push API's single pushes: concurrent ones of an app share a transaction.
    group_commit: GroupCommit
    history: History
    presence: PresenceStore

    @classmethod
    def build(cls, shared: Shared, handoff: Callable[[list[Committed]], None] | None = None) -> ApiRole:
        settings, db, cache = shared.settings, shared.backends.database, shared.backends.cache
        publisher = Publisher(db, shared.epochs, observer=shared.tracing.commits, handoff=handoff)
        return cls(
            shared=shared,
            # Its changes restamp the app in the cache (cached server keys are reloaded on their next
            # request, on every instance), then go through the registry to every instance.
            tenancy=TenancyService(
                db,
                shared.box,
                settings.limit_maxima,
                on_change=announcer(cache_stamper(cache), registry_publisher(shared.backends.registry)),
            ),
            accounts=AccountService(db),
            auth=ServerAuthenticator(db, shared.box, cache, settings.trusted_networks),
            publisher=publisher,
            group_commit=GroupCommit(publisher, on_transaction=shared.metrics.push_transaction),
            history=History(db, shared.epochs),
            presence=PresenceStore(db, cache),
        )

    @property
    def push_enabled(self) -> bool:
        return bool(self.shared.config.get("push_enabled"))

    async def start(self) -> None:
        """Nothing to start: the role's services answer requests (config is watched by Shared)."""

    async def stop(self) -> None:
        """Nothing to stop: requests end with the server that serves them."""
