"""Addresses of the real services the suite runs against (started by scripts/services.sh).

No test skips when a service is missing: a connection error fails the run, as CI requires.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pushwire.storage.database import Database

REDIS_URL = os.environ.get("PUSHWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KAFKA_URL = os.environ.get("PUSHWIRE_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
ETCD_URL = os.environ.get("PUSHWIRE_TEST_ETCD_URL", "etcd://127.0.0.1:2379")
# The server part only; each test session creates and drops its own throwaway database.
MYSQL_SERVER_URL = os.environ.get("PUSHWIRE_TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")


def unique(prefix: str) -> str:
    """A name no other test (or concurrent run) uses: keeps runs independent on shared services."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def new_app_id(database: Database) -> str:
    """A tenant and an app of its own in `database`: its id."""
    from pushwire.tenants.crypto import SecretBox
    from pushwire.tenants.service import TenancyService

    svc = TenancyService(database, SecretBox("x" * 32))
    tenant = await svc.create_tenant(unique("t"))
    return (await svc.create_app(tenant.tenant_id, "web")).app_id
