"""Tenancy service on both dialects: creation, scoping by tenant, keys, secrets sealed at rest."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushwire.storage.database import Database
from pushwire.storage.models import ServerKey
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import Invalid, NotFound, TenancyService
from tests.services import unique


@pytest.fixture
def svc(database: Database) -> TenancyService:
    return TenancyService(database, SecretBox("k" * 32))


async def test_new_app_has_all_scopes_and_decimal_id(svc: TenancyService) -> None:
    tenant = await svc.create_tenant(unique("acme"))
    created = await svc.create_app(tenant.tenant_id, "web", ["https://Example.com/"])
    assert created.app_id.isdigit()
    keys = await svc.list_server_keys(created.app_id, tenant.tenant_id)
    assert [k.scopes for k in keys] == [["push", "presence:read", "history:read"]]
    app = await svc.get_app(created.app_id, tenant.tenant_id)
    assert app.allowed_origins == ["https://example.com"]
    assert app.limits.max_payload_bytes == 65_536


async def test_other_tenant_gets_not_found(svc: TenancyService) -> None:
    a = await svc.create_tenant(unique("a"))
    b = await svc.create_tenant(unique("b"))
    app_a = await svc.create_app(a.tenant_id, "web")
    with pytest.raises(NotFound):
        await svc.get_app(app_a.app_id, b.tenant_id)
    with pytest.raises(NotFound):
        await svc.create_server_key(app_a.app_id, b.tenant_id)
    with pytest.raises(NotFound):
        await svc.revoke_server_key(app_a.server_key.key_id, b.tenant_id)
    assert [x.app_id for x in await svc.list_apps(b.tenant_id)] == []


async def test_secrets_are_sealed_not_stored_plain(svc: TenancyService, database: Database) -> None:
    tenant = await svc.create_tenant(unique("s"))
    created = await svc.create_app(tenant.tenant_id, "web")
    async with database.session() as s:
        row = await s.get(ServerKey, created.server_key.key_id)
    assert row is not None
    assert created.server_key.secret.encode() not in row.secret_enc
    assert svc.box.open(row.secret_enc, row.id) == created.server_key.secret
    with pytest.raises(Exception):  # bound to its key id: cannot be moved to another row
        svc.box.open(row.secret_enc, "sk_other")


async def test_rotation_two_active_then_revoke(svc: TenancyService) -> None:
    tenant = await svc.create_tenant(unique("r"))
    created = await svc.create_app(tenant.tenant_id, "web")
    second = await svc.create_server_key(created.app_id, tenant.tenant_id, ["push"], ["10.0.0.0/8", "2001:db8::/32"])
    keys = await svc.list_server_keys(created.app_id, None)
    assert sum(k.revoked_at is None for k in keys) == 2
    await svc.revoke_server_key(created.server_key.key_id, tenant.tenant_id)
    active = [k.key_id for k in await svc.list_server_keys(created.app_id, None) if k.revoked_at is None]
    assert active == [second.key_id]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scopes": ["push", "admin"]}, "unknown scope"),
        ({"allow_ips": ["10.0.0.300/8"]}, "not an IPv4/IPv6"),
    ],
)
async def test_bad_key_input_is_refused(svc: TenancyService, kwargs: dict[str, list[str]], fragment: str) -> None:
    tenant = await svc.create_tenant(unique("k"))
    created = await svc.create_app(tenant.tenant_id, "web")
    with pytest.raises(Invalid, match=fragment):
        await svc.create_server_key(created.app_id, tenant.tenant_id, **kwargs)


async def test_duplicate_names_are_refused(svc: TenancyService) -> None:
    name = unique("dup")
    tenant = await svc.create_tenant(name)
    with pytest.raises(Invalid):
        await svc.create_tenant(name)
    await svc.create_app(tenant.tenant_id, "web")
    with pytest.raises(Invalid):
        await svc.create_app(tenant.tenant_id, "web")


async def test_client_keys_hs256_and_public_keys(svc: TenancyService) -> None:
    tenant = await svc.create_tenant(unique("c"))
    created = await svc.create_app(tenant.tenant_id, "web")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    r = await svc.create_client_key(created.app_id, tenant.tenant_id, rsa_pem)
    e = await svc.create_client_key(created.app_id, tenant.tenant_id, ec_pem)
    assert r.secret is None and e.secret is None
    algs = {k.kid: k.alg for k in await svc.list_client_keys(created.app_id, tenant.tenant_id)}
    assert algs[r.kid] == "RS256" and algs[e.kid] == "ES256" and algs[created.client_key.kid] == "HS256"
    with pytest.raises(Invalid):
        await svc.create_client_key(created.app_id, tenant.tenant_id, "not a pem")
    kid, secret = await svc.hs256_signing_secret(created.app_id, tenant.tenant_id)
    assert (kid, secret) == (created.client_key.kid, created.client_key.secret)


async def test_listing_is_scoped(svc: TenancyService, database: Database) -> None:
    a = await svc.create_tenant(unique("la"))
    await svc.create_app(a.tenant_id, "one")
    assert [t.tenant_id for t in await svc.list_tenants(a.tenant_id)] == [a.tenant_id]
    async with database.session() as s:
        total = await s.scalar(sa.select(sa.func.count()).select_from(ServerKey))
    assert total and total >= 1
