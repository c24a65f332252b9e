"""Console accounts: argon2 password hashes (pwdlib), roles and memberships."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from pwdlib import PasswordHash
from sqlalchemy.exc import IntegrityError

from pushwire import ids
from pushwire.storage.database import Database
from pushwire.storage.models import ConsoleUser, Membership, Tenant
from pushwire.storage.models.accounts import ROLES
from pushwire.tenants.service import Invalid, NotFound


class Account(msgspec.Struct, frozen=True):
    user_id: str
    email: str
    role: str
    # None for operators (every tenant).
    tenant_id: str | None


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hasher = PasswordHash.recommended()

    async def create_user(self, email: str, password: str, role: str, tenant_id: str | None) -> Account:
        email = email.strip().lower()
        if "@" not in email or len(email) > 254:
            raise Invalid(f"{email!r} is not an email address")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 10:
            raise Invalid("password must be at least 10 characters")
        if role != "operator" and not tenant_id:
            raise Invalid(f"role {role} needs --tenant")
        async with self.db.session() as s:
            if tenant_id and await s.get(Tenant, tenant_id) is None:
                raise NotFound(tenant_id)
            user = ConsoleUser(
                id=ids.user_account_id(),
                email=email,
                password_hash=self.hasher.hash(password),
                is_operator=role == "operator",
            )
            s.add(user)
            try:
                await s.flush()
            except IntegrityError:
                raise Invalid(f"a console user {email} exists") from None
            if role != "operator" and tenant_id:
                s.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
            await s.commit()
            return Account(user_id=user.id, email=email, role=role, tenant_id=None if role == "operator" else tenant_id)

    async def verify(self, email: str, password: str) -> Account | None:
        """The account when the password matches; None otherwise (no hint which part was wrong)."""
        email = email.strip().lower()
        async with self.db.session() as s:
            user = (await s.scalars(sa.select(ConsoleUser).where(ConsoleUser.email == email))).first()
            if user is None or user.disabled:
                self.hasher.hash(password)  # same cost either way: no timing hint that the email exists
                return None
            if not self.hasher.verify(password, user.password_hash):
                return None
            return await self._account(s, user)

    async def count_operators(self) -> int:
        async with self.db.session() as s:
            return int(await s.scalar(sa.select(sa.func.count()).where(ConsoleUser.is_operator.is_(True))) or 0)

    async def _account(self, s: object, user: ConsoleUser) -> Account:
        if user.is_operator:
            return Account(user_id=user.id, email=user.email, role="operator", tenant_id=None)
        m = (await s.scalars(sa.select(Membership).where(Membership.user_id == user.id))).first()  # type: ignore[attr-defined]
        if m is None:
            return Account(user_id=user.id, email=user.email, role="tenant_viewer", tenant_id="")
        return Account(user_id=user.id, email=user.email, role=m.role, tenant_id=m.tenant_id)
