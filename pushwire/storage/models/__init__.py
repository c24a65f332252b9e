"""ORM models, one file per aggregate. Importing this package registers every table on Base.metadata."""

from pushwire.storage.models.accounts import ConsoleUser, Membership
from pushwire.storage.models.audit import AuditEntry
from pushwire.storage.models.base import Base
from pushwire.storage.models.delivery import Ack, PresenceRoute
from pushwire.storage.models.messages import Channel, IdempotencyRecord, Message, OutboxEntry
from pushwire.storage.models.tenancy import App, ClientKey, ServerKey, Tenant

__all__ = [
    "Ack",
    "App",
    "AuditEntry",
    "Base",
    "Channel",
    "ClientKey",
    "ConsoleUser",
    "IdempotencyRecord",
    "Membership",
    "Message",
    "OutboxEntry",
    "PresenceRoute",
    "ServerKey",
    "Tenant",
]
