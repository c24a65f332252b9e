"""Server keys (sign the push API) and client keys (verify end-user tokens) of an app, in scope."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from pushwire import ids
from pushwire.storage.dialect import utcnow
from pushwire.storage.models import App, ClientKey, ServerKey
from pushwire.tenants.base import ServiceBase, client_key_view, key_view
from pushwire.tenants.errors import Invalid, NotFound
from pushwire.tenants.inputs import normalise_cidrs, normalise_scopes, public_key_alg
from pushwire.tenants.views import ClientKeySecret, ClientKeyView, KeySecret, ServerKeyView


class KeyService(ServiceBase):
    # -- server keys ---------------------------------------------------
    async def create_server_key(
        self,
        app_id: str,
        tenant_id: str | None,
        scopes: Sequence[str] | None = None,
        allow_ips: Sequence[str] | None = None,
        label: str = "",
        operator: bool = False,
    ) -> KeySecret:
        """`operator` keys also call the admin API; only the CLI (server access) may make them."""
        scopes_n, cidrs = normalise_scopes(scopes), normalise_cidrs(allow_ips)
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            row, secret = self._new_server_key(app_id, scopes_n, cidrs, label)
            row.is_operator = operator
            s.add(row)
            await s.commit()
            return secret

    async def list_server_keys(self, app_id: str, tenant_id: str | None) -> list[ServerKeyView]:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            rows = await s.scalars(
                sa.select(ServerKey).where(ServerKey.app_id == app_id).order_by(ServerKey.created_at)
            )
            return [key_view(k) for k in rows.all()]

    async def revoke_server_key(self, key_id: str, tenant_id: str | None) -> ServerKeyView:
        async with self.db.session() as s:
            q = sa.select(ServerKey).join(App, App.id == ServerKey.app_id).where(ServerKey.id == key_id)
            if tenant_id is not None:
                q = q.where(App.tenant_id == tenant_id)
            key = (await s.scalars(q)).first()
            if key is None:
                raise NotFound(key_id)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                await s.commit()
            view = key_view(key)
        await self._announce("server_key.revoke", view.app_id)
        return view

    # -- client keys ---------------------------------------------------
    async def create_client_key(
        self, app_id: str, tenant_id: str | None, public_key_pem: str | None = None
    ) -> ClientKeySecret:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            if public_key_pem is None:
                row, secret = self._new_hs_client_key(app_id)
            else:
                alg = public_key_alg(public_key_pem)
                row = ClientKey(kid=ids.client_key_id(), app_id=app_id, alg=alg, public_key_pem=public_key_pem.strip())
                secret = None
            s.add(row)
            await s.commit()
            return ClientKeySecret(kid=row.kid, secret=secret)

    async def list_client_keys(self, app_id: str, tenant_id: str | None) -> list[ClientKeyView]:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            rows = await s.scalars(
                sa.select(ClientKey).where(ClientKey.app_id == app_id).order_by(ClientKey.created_at)
            )
            return [client_key_view(k) for k in rows.all()]

    async def revoke_client_key(self, kid: str, app_id: str, tenant_id: str | None) -> None:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            key = await s.get(ClientKey, kid)
            if key is None or key.app_id != app_id:
                raise NotFound(kid)
            key.revoked_at = key.revoked_at or utcnow()
            await s.commit()
        await self._announce("client_key.revoke", app_id)

    async def hs256_signing_secret(self, app_id: str, tenant_id: str | None) -> tuple[str, str]:
        """(kid, secret) of the newest active HS256 client key: for minting development tokens."""
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            q = (
                sa.select(ClientKey)
                .where(ClientKey.app_id == app_id, ClientKey.alg == "HS256", ClientKey.revoked_at.is_(None))
                .order_by(ClientKey.created_at.desc())
            )
            key = (await s.scalars(q)).first()
            if key is None or key.secret_enc is None:
                raise Invalid("the app has no active HS256 client key to sign with")
            return key.kid, self.box.open(key.secret_enc, key.kid)

    # -- helpers -------------------------------------------------------
    def _new_server_key(
        self, app_id: str, scopes: list[str], cidrs: list[str], label: str
    ) -> tuple[ServerKey, KeySecret]:
        key_id, secret = ids.server_key_id(), ids.secret()
        row = ServerKey(
            id=key_id,
            app_id=app_id,
            label=label[:64],
            secret_enc=self.box.seal(secret, key_id),
            scopes=scopes,
            allow_ips=cidrs,
            created_at=utcnow(),
        )
        return row, KeySecret(key_id=key_id, secret=secret)

    def _new_hs_client_key(self, app_id: str) -> tuple[ClientKey, str]:
        kid, secret = ids.client_key_id(), ids.secret()
        return ClientKey(kid=kid, app_id=app_id, alg="HS256", secret_enc=self.box.seal(secret, kid)), secret
