"""Console accounts: argon2 password hashes (pwdlib), roles and memberships."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from pwdlib import PasswordHash
from sqlalchemy.exc import IntegrityError

from pushwire import ids
from pushwire.accounts.hashing import PasswordWorker
from pushwire.storage.database import Database
from pushwire.storage.models import ConsoleUser, Membership, Tenant
from pushwire.storage.models.accounts import ROLES
from pushwire.tenants.service import Invalid, NotFound

# argon2 reads the whole password: longer ones are refused before any hashing.
MAX_PASSWORD = 1024


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
        # Every hash and verify runs here, never on the event loop.
        self.passwords = PasswordWorker(self.hasher)

    async def create_user(self, email: str, password: str, role: str, tenant_id: str | None) -> Account:
        email = email.strip().lower()
        if "@" not in email or len(email) > 254:
            raise Invalid(f"{email!r} is not an email address")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 10:
            raise Invalid("password must be at least 10 characters")
        if len(password) > MAX_PASSWORD:
            raise Invalid(f"password must be at most {MAX_PASSWORD} characters")
        if role != "operator" and not tenant_id:
            raise Invalid(f"role {role} needs --tenant")
        # Not bounded: account creation is rare and made by an operator, never shed.
        password_hash = await self.passwords.hash(password, bounded=False)
        async with self.db.session() as s:
            if tenant_id and await s.get(Tenant, tenant_id) is None:
                raise NotFound(tenant_id)
            user = ConsoleUser(
                id=ids.user_account_id(),
                email=email,
                password_hash=password_hash,
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
        """The account when the password matches; None otherwise (no hint which part was wrong).

        Raises Busy (pushwire.accounts.hashing) when the hashing queue is full. No database
        connection is held while the hash runs or waits.
        """
        email = email.strip().lower()
        async with self.db.session() as s:
            user = (await s.scalars(sa.select(ConsoleUser).where(ConsoleUser.email == email))).first()
        if user is None or user.disabled:
            # Same cost either way: no timing hint that the email exists.
            await self.passwords.dummy_verify(password)
            return None
        if not await self.passwords.verify(password, user.password_hash):
            return None
        async with self.db.session() as s:
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
