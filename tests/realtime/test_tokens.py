"""Client token verification on both dialects: valid tokens of each key type and every refusal."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushwire.realtime.tokens import ClientIdentity, ClientTokenVerifier, TokenError
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tenants.views import AppCreated, AppLimits
from tests.services import unique

# Generated once: RSA generation is slow and the keys need not differ between tests.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A token built by hand (PyJWT refuses to make the malicious ones); HMAC-signed when a key is given."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


@dataclass
class World:
    svc: TenancyService
    verifier: ClientTokenVerifier
    tenant_id: str
    a: AppCreated
    b: AppCreated
    rsa_kid: str
    es_kid: str

    def claims(self, for_app: AppCreated | None = None, **extra: Any) -> dict[str, Any]:
        """Valid claims for app A (or `for_app`); `claim=...` (Ellipsis) leaves a claim out."""
        now = int(time.time())
        base: dict[str, Any] = {"sub": "u1", "app": (for_app or self.a).app_id, "iat": now, "exp": now + 600}
        return {k: v for k, v in {**base, **extra}.items() if v is not ...}

    def hs(self, claims: dict[str, Any], app: AppCreated | None = None, kid: str | None = None) -> str:
        c = (app or self.a).client_key
        assert c.secret
        return jwt.encode(claims, c.secret, algorithm="HS256", headers={"kid": kid or c.kid})


@pytest.fixture
async def world(database: Database) -> World:
    box = SecretBox("k" * 32)
    svc = TenancyService(database, box)
    tenant = await svc.create_tenant(unique("tok"))
    a = await svc.create_app(tenant.tenant_id, "a", ["https://chat.example.com"])
    b = await svc.create_app(tenant.tenant_id, "b")
    rsa_key = await svc.create_client_key(a.app_id, tenant.tenant_id, pem(RSA_KEY))
    es_key = await svc.create_client_key(a.app_id, tenant.tenant_id, pem(EC_KEY))
    return World(svc, ClientTokenVerifier(database, box), tenant.tenant_id, a, b, rsa_key.kid, es_key.kid)


async def refused(verifier: ClientTokenVerifier, token: str, fragment: str, app_hint: str | None = None) -> None:
    with pytest.raises(TokenError) as info:
        await verifier.verify(token, app_hint)
    reason = info.value.reason
    assert fragment in reason, reason
    assert token not in reason or not token


# -- accepted ---------------------------------------------------------------
async def test_hs256_gives_the_identity(world: World) -> None:
    claims = world.claims(channels=["room.*", "lobby"], info={"name": "Ann"})
    ident = await world.verifier.verify(world.hs(claims), app_hint=world.a.app_id)
    assert ident == ClientIdentity(
        app_id=world.a.app_id,
        tenant_id=world.tenant_id,
        user_id="u1",
        channels=("room.*", "lobby"),
        info={"name": "Ann"},
        expires_at=float(claims["exp"]),
        max_connections=10_000,
        max_connections_per_user=10,
        allowed_origins=("https://chat.example.com",),
        kid=world.a.client_key.kid,
    )


async def test_rs256_and_es256(world: World) -> None:
    rs = jwt.encode(world.claims(sub="r"), RSA_KEY, algorithm="RS256", headers={"kid": world.rsa_kid})
    es = jwt.encode(world.claims(sub="e"), EC_KEY, algorithm="ES256", headers={"kid": world.es_kid})
    assert (await world.verifier.verify(rs)).user_id == "r"
    ident = await world.verifier.verify(es)
    assert (ident.user_id, ident.app_id, ident.channels, ident.info) == ("e", world.a.app_id, (), None)


async def test_expired_within_leeway_is_accepted(world: World) -> None:
    now = int(time.time())
    assert await world.verifier.verify(world.hs(world.claims(iat=now - 300, exp=now - 10)))


async def test_lifetime_without_iat_counts_from_now(world: World) -> None:
    assert await world.verifier.verify(world.hs(world.claims(iat=..., exp=int(time.time()) + 3600)))


# -- refused: algorithm -----------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none(world: World, alg: str) -> None:
    token = craft({"alg": alg, "typ": "JWT", "kid": world.a.client_key.kid}, world.claims())
    await refused(world.verifier, token, "alg")


@pytest.mark.parametrize("suffix", ["", "\n"])
async def test_algorithm_confusion_rsa_public_key_as_hmac_secret(world: World, suffix: str) -> None:
    for kid, key in ((world.rsa_kid, RSA_KEY), (world.es_kid, EC_KEY)):
        token = craft({"alg": "HS256", "typ": "JWT", "kid": kid}, world.claims(), (pem(key).strip() + suffix).encode())
        await refused(world.verifier, token, "algorithm")


async def test_key_used_with_another_asymmetric_alg(world: World) -> None:
    token = jwt.encode(world.claims(), RSA_KEY, algorithm="RS512", headers={"kid": world.rsa_kid})
    await refused(world.verifier, token, "algorithm")
    token = jwt.encode(world.claims(), RSA_KEY, algorithm="RS256", headers={"kid": world.es_kid})
    await refused(world.verifier, token, "algorithm")


async def test_bad_signature(world: World) -> None:
    token = jwt.encode(world.claims(), "x" * 43, algorithm="HS256", headers={"kid": world.a.client_key.kid})
    await refused(world.verifier, token, "signature")
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(world.claims(), other, algorithm="ES256", headers={"kid": world.es_kid})
    await refused(world.verifier, token, "signature")


# -- refused: time ----------------------------------------------------------
async def test_time_claims(world: World) -> None:
    now = int(time.time())
    v = world.verifier
    await refused(v, world.hs(world.claims(iat=now - 300, exp=now - 31)), "expired")
    await refused(v, world.hs(world.claims(iat=now, exp=now + 86_400 + 1)), "lifetime")
    await refused(v, world.hs(world.claims(iat=..., exp=now + 86_400 + 60)), "lifetime")
    await refused(v, world.hs(world.claims(iat=now - 86_400, exp=now + 60)), "lifetime")
    await refused(v, world.hs(world.claims(iat=now + 120, exp=now + 600)), "not yet valid")
    await refused(v, world.hs(world.claims(nbf=now + 120)), "not yet valid")
    for bad in ("soon", True, None, float("nan"), float("inf")):
        await refused(v, world.hs(world.claims(exp=bad)), "")
    await refused(v, world.hs(world.claims(iat=float("nan"))), "")


async def test_lower_app_lifetime_applies(world: World) -> None:
    await world.svc.update_app(world.b.app_id, world.tenant_id, limits=AppLimits(max_token_lifetime=60))
    now = int(time.time())
    # iat pinned: under load the clock may tick between `now` and claims(), shortening the lifetime.
    assert await world.verifier.verify(world.hs(world.claims(world.b, iat=now, exp=now + 60), world.b))
    await refused(world.verifier, world.hs(world.claims(world.b, iat=now, exp=now + 61), world.b), "lifetime")


# -- refused: claims --------------------------------------------------------
@pytest.mark.parametrize(("claim", "fragment"), [("sub", "sub"), ("exp", "exp"), ("app", "app")])
async def test_missing_required_claim(world: World, claim: str, fragment: str) -> None:
    await refused(world.verifier, world.hs(world.claims(**{claim: ...})), fragment)


@pytest.mark.parametrize("sub", ["", "bad user", "x" * 129, 7, ["u1"]])
async def test_invalid_sub(world: World, sub: object) -> None:
    await refused(world.verifier, world.hs(world.claims(sub=sub)), "sub")


@pytest.mark.parametrize(
    "channels", ["room.a", {"room.a": 1}, [1], ["bad room"], ["a*b"], ["room.*x"], ["**"], [""], ["x" * 165], None]
)
async def test_bad_channels_claim(world: World, channels: object) -> None:
    await refused(world.verifier, world.hs(world.claims(channels=channels)), "channels")


async def test_info_claim(world: World) -> None:
    assert (await world.verifier.verify(world.hs(world.claims(info={"n": "a" * 900})))).info == {"n": "a" * 900}
    await refused(world.verifier, world.hs(world.claims(info={"n": "a" * 1100})), "too large")
    await refused(world.verifier, world.hs(world.claims(info=["not", "an", "object"])), "info")


# -- refused: apps and keys -------------------------------------------------
async def test_app_claim_and_hint(world: World) -> None:
    v = world.verifier
    await refused(v, world.hs(world.claims(app="999999999")), "unknown key")
    await refused(v, world.hs(world.claims(app="not-an-app")), "app")
    await refused(v, world.hs(world.claims()), "another app", app_hint=world.b.app_id)


async def test_keys_never_cross_apps(world: World) -> None:
    v = world.verifier
    assert await v.verify(world.hs(world.claims()))  # app A's key is now cached under (A, kid)
    # Names app B but carries (and is signed with) app A's key.
    await refused(v, world.hs(world.claims(world.b), kid=world.a.client_key.kid), "unknown key")
    rs = jwt.encode(world.claims(world.b), RSA_KEY, algorithm="RS256", headers={"kid": world.rsa_kid})
    await refused(v, rs, "unknown key")
    # Signed with A's key, naming A, presented where app B is expected.
    await refused(v, world.hs(world.claims()), "another app", app_hint=world.b.app_id)
    # App B's own secret under app A's kid: the right key for A is used, the signature fails.
    await refused(v, world.hs(world.claims(), app=world.b, kid=world.a.client_key.kid), "signature")


async def test_unknown_and_missing_kid(world: World) -> None:
    c = world.a.client_key
    assert c.secret
    await refused(world.verifier, world.hs(world.claims(), kid="ck_00000000000000000000"), "unknown key")
    await refused(world.verifier, world.hs(world.claims(), kid="ck_" + "0" * 100), "unknown key")
    await refused(world.verifier, jwt.encode(world.claims(), c.secret, algorithm="HS256"), "kid")
    await refused(world.verifier, craft({"alg": "HS256", "kid": 5}, world.claims(), c.secret.encode()), "")
    await refused(world.verifier, craft({"alg": "HS256", "kid": ""}, world.claims(), c.secret.encode()), "kid")


async def test_revoked_key(world: World, database: Database) -> None:
    token = jwt.encode(world.claims(), RSA_KEY, algorithm="RS256", headers={"kid": world.rsa_kid})
    assert await world.verifier.verify(token)
    await world.svc.revoke_client_key(world.rsa_kid, world.a.app_id, world.tenant_id)
    box = SecretBox("k" * 32)
    await refused(ClientTokenVerifier(database, box), token, "revoked")
    await refused(ClientTokenVerifier(database, box, cache_ttl=0), token, "revoked")
    # The long-lived verifier may keep its cached key for up to cache_ttl (documented); not beyond.
    world.verifier.cache_ttl = 0
    await refused(world.verifier, token, "revoked")


async def test_disabled_app(world: World, database: Database) -> None:
    token = world.hs(world.claims())
    await world.svc.update_app(world.a.app_id, world.tenant_id, enabled=False)
    await refused(ClientTokenVerifier(database, SecretBox("k" * 32)), token, "disabled")


async def test_wrong_server_secret_refuses(world: World, database: Database) -> None:
    await refused(ClientTokenVerifier(database, SecretBox("other" * 8)), world.hs(world.claims()), "unknown key")


# -- refused: garbage -------------------------------------------------------
@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "ü.ü.ü",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        craft({"alg": "HS256", "kid": "x"}, {"app": "1"}).replace(".", "!", 1),
        b64(b"[" * 3000 + b"]" * 3000) + "." + b64(b"{}") + ".",
        b64(b'{"alg":"HS256","kid":"ck"}') + "." + b64(b"[" * 3000 + b"]" * 3000) + ".",
        b64(b'"just a string"') + "." + b64(b"{}") + ".",
    ],
)
async def test_garbage(world: World, token: str) -> None:
    await refused(world.verifier, token, "")


async def test_over_8kib_token(world: World) -> None:
    token = world.hs(world.claims(pad="x" * 9000))
    await refused(world.verifier, token, "too long")


# -- may_subscribe ----------------------------------------------------------
def identity(channels: tuple[str, ...]) -> ClientIdentity:
    return ClientIdentity(
        app_id="1",
        tenant_id="t",
        user_id="u1",
        channels=channels,
        info=None,
        expires_at=0.0,
        max_connections=1,
        max_connections_per_user=1,
        allowed_origins=(),
    )


@pytest.mark.parametrize(
    ("channels", "channel", "allowed"),
    [
        (("room.lobby",), "room.lobby", True),
        (("room.lobby",), "room.lobby2", False),
        (("room.lobby",), "room", False),
        (("room.*",), "room.a", True),
        (("room.*",), "room.", True),
        (("room.*",), "roomy", False),
        (("room.*",), "other.a", False),
        ((), "user.u1", True),
        ((), "user.u2", False),
        (("*",), "user.u2", False),
        (("user.*",), "user.u2", False),
        (("user.u2",), "user.u2", False),
        (("*",), "anything", True),
        ((), "broadcast", True),
        ((), "room.a", False),
        (("*",), "bad channel", False),
    ],
)
def test_may_subscribe(channels: tuple[str, ...], channel: str, allowed: bool) -> None:
    assert identity(channels).may_subscribe(channel) is allowed


async def test_a_connect_storm_loads_the_key_once(world: World) -> None:
    loads = 0
    load = world.verifier._load

    async def counted(app: str, kid: str) -> Any:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return await load(app, kid)

    world.verifier._load = counted  # type: ignore[method-assign]
    tokens = [world.hs(world.claims(sub=f"s{i}")) for i in range(50)]
    idents = await asyncio.gather(*(world.verifier.verify(t) for t in tokens))
    assert [i.user_id for i in idents] == [f"s{i}" for i in range(50)]
    assert loads == 1
    # Revoked and invalidated: the next verify loads again and refuses.
    await world.svc.revoke_client_key(world.a.client_key.kid, world.a.app_id, world.tenant_id)
    world.verifier.invalidate(world.a.app_id)
    await refused(world.verifier, tokens[1], "key revoked")
    assert loads == 2
