"""Messaging services over each database (SQLite, MariaDB), and a live server per backend set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pushwire.messaging.browse import MessageBrowser
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.publish import Publisher
from pushwire.messaging.replay import Replayer
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from tests.live import LiveServer, backend_env, live_server
from tests.services import unique

SECRET = "test-secret-key-0123456789"


@dataclass
class Services:
    db: Database
    publisher: Publisher
    browser: MessageBrowser
    replayer: Replayer
    tenant_id: str
    app_id: str
    other_tenant: str
    other_app: str


@pytest.fixture
async def services(database: Database) -> Services:
    tenancy = TenancyService(database, SecretBox(SECRET))
    t1 = await tenancy.create_tenant(unique("t-"))
    t2 = await tenancy.create_tenant(unique("t-"))
    a1 = await tenancy.create_app(t1.tenant_id, "a")
    a2 = await tenancy.create_app(t2.tenant_id, "b")
    publisher = Publisher(database, EpochSeed(SECRET))
    browser = MessageBrowser(database)
    return Services(
        database, publisher, browser, Replayer(publisher, browser), t1.tenant_id, a1.app_id, t2.tenant_id, a2.app_id
    )


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_HEARTBEAT="25")
    async with live_server(env) as server:
        yield server
