"""App limits in the service, on SQLite and MariaDB: the platform maxima, and only operators raise."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.settings import LimitMaxima, load_settings
from pushwire.storage.database import Database
from pushwire.storage.models import App
from pushwire.tenants.changes import AppChange
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.limits import LimitRaiseRefused, LimitsInvalid
from pushwire.tenants.service import Invalid, TenancyService
from pushwire.tenants.views import AppLimits
from tests.services import unique

MAXIMA = LimitMaxima(push_rate=5_000, retention_days=365)


@pytest.fixture
def svc(database: Database) -> TenancyService:
    return TenancyService(database, SecretBox("k" * 32), MAXIMA)


async def _app(svc: TenancyService) -> tuple[str, str]:
    tenant = await svc.create_tenant(unique("lim"))
    return tenant.tenant_id, (await svc.create_app(tenant.tenant_id, "web")).app_id


def _with(limits: AppLimits, **values: Any) -> AppLimits:
    return msgspec.structs.replace(limits, **values)


async def test_tenant_admin_may_lower_and_keep_but_not_raise(svc: TenancyService) -> None:
    tenant_id, app_id = await _app(svc)
    start = (await svc.get_app(app_id, tenant_id)).limits
    lowered = await svc.update_app(app_id, tenant_id, limits=_with(start, push_rate=50, retention_days=7))
    assert (lowered.limits.push_rate, lowered.limits.retention_days) == (50, 7)
    kept = await svc.update_app(app_id, tenant_id, origins=["https://a.example.com"], limits=lowered.limits)
    assert kept.limits == lowered.limits and kept.allowed_origins == ["https://a.example.com"]
    for field, value in (("push_rate", 51), ("retention_days", 8), ("max_connections", 10_001)):
        with pytest.raises(LimitRaiseRefused, match="only an operator can raise"):
            await svc.update_app(app_id, tenant_id, limits=_with(lowered.limits, **{field: value}))
    # Nothing of a refused update is stored, not even its other fields.
    with pytest.raises(LimitRaiseRefused):
        await svc.update_app(app_id, tenant_id, enabled=False, limits=_with(lowered.limits, push_rate=60))
    after = await svc.get_app(app_id, None)
    assert after.limits == lowered.limits and after.enabled


async def test_operator_raises_up_to_the_maxima(svc: TenancyService) -> None:
    _, app_id = await _app(svc)
    start = (await svc.get_app(app_id, None)).limits
    raised = await svc.update_app(app_id, None, limits=_with(start, push_rate=5_000, retention_days=365))
    assert (raised.limits.push_rate, raised.limits.retention_days) == (5_000, 365)
    with pytest.raises(LimitsInvalid, match=r"push rate .* between 1 and 5000 .*PUSHWIRE_MAX_PUSH_RATE"):
        await svc.update_app(app_id, None, limits=_with(start, push_rate=5_001))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("push_rate", 2_000_000_000, "between 1 and 5000"),
        ("max_connections", 2_000_000_000, "between 1 and 100000"),
        ("hot_history_size", 2_000_000_000, "between 1 and 10000"),
        ("retention_days", 1_000_000, "between 1 and 365"),
        ("push_burst", 0, "between 1 and"),
        ("max_payload_bytes", -5, "between 1 and"),
        ("push_rate", 1.5, "whole number"),
        ("push_rate", "100", "whole number"),
        ("push_rate", True, "whole number"),
    ],
)
async def test_out_of_range_values_are_refused_for_everyone(
    svc: TenancyService, field: str, value: Any, message: str
) -> None:
    tenant_id, app_id = await _app(svc)
    start = (await svc.get_app(app_id, None)).limits
    for scope in (None, tenant_id):
        with pytest.raises(LimitsInvalid, match=message) as refused:
            await svc.update_app(app_id, scope, limits=_with(start, **{field: value}))
        assert isinstance(refused.value, Invalid)  # the console's 422 form error, the API's 422
        assert refused.value.details[0]["field"] == f"$.{field}"
    assert (await svc.get_app(app_id, None)).limits == start


async def test_a_value_over_the_maxima_set_earlier_does_not_block_other_edits(
    svc: TenancyService, database: Database
) -> None:
    tenant_id, app_id = await _app(svc)
    async with database.session() as s:  # as stored before the maxima were enforced
        await s.execute(sa.update(App).where(App.id == app_id).values(retention_days=1_000_000))
        await s.commit()
    app = await svc.get_app(app_id, tenant_id)
    kept = await svc.update_app(app_id, tenant_id, origins=["https://b.example.com"], limits=app.limits)
    assert kept.limits.retention_days == 1_000_000 and kept.allowed_origins == ["https://b.example.com"]
    lowered = await svc.update_app(app_id, tenant_id, limits=_with(app.limits, retention_days=30))
    assert lowered.limits.retention_days == 30


async def test_maxima_come_from_the_settings(database: Database) -> None:
    settings = load_settings({"PUSHWIRE_SECRET_KEY": "s" * 32, "PUSHWIRE_MAX_PUSH_RATE": "200"})
    svc = TenancyService(database, SecretBox("k" * 32), settings.limit_maxima)
    _, app_id = await _app(svc)
    start = (await svc.get_app(app_id, None)).limits
    with pytest.raises(LimitsInvalid, match="between 1 and 200"):
        await svc.update_app(app_id, None, limits=_with(start, push_rate=201, push_burst=start.push_burst))


async def test_changes_are_announced_after_the_commit(svc: TenancyService) -> None:
    seen: list[AppChange] = []

    async def observer(change: AppChange) -> None:
        # Called after the commit: what it reads is the new state.
        seen.append(change)

    svc.on_change = observer
    tenant_id, app_id = await _app(svc)
    other = (await svc.create_app(tenant_id, "other")).app_id
    keys = await svc.list_client_keys(app_id, None)
    await svc.revoke_client_key(keys[0].kid, app_id, tenant_id)
    server_key = (await svc.list_server_keys(app_id, None))[0]
    await svc.revoke_server_key(server_key.key_id, tenant_id)
    await svc.update_app(app_id, tenant_id, enabled=False)
    await svc.update_app(app_id, tenant_id, enabled=False)  # no change: no notice
    await svc.set_tenant_disabled(tenant_id, True)
    assert [(c.kind, c.app_id) for c in seen[:3]] == [
        ("client_key.revoke", app_id),
        ("server_key.revoke", app_id),
        ("app.update", app_id),
    ]
    assert sorted((c.kind, c.app_id) for c in seen[3:]) == sorted([("tenant.update", app_id), ("tenant.update", other)])
    assert len({c.id for c in seen}) == len(seen)
    assert (await svc.get_tenant(tenant_id)).disabled


async def test_a_failing_observer_does_not_undo_the_change(svc: TenancyService) -> None:
    async def broken(change: AppChange) -> None:
        raise ConnectionError("registry down")

    svc.on_change = broken
    tenant_id, app_id = await _app(svc)
    await svc.update_app(app_id, tenant_id, enabled=False)
    assert not (await svc.get_app(app_id, None)).enabled
