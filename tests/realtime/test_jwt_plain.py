"""The plain-token path (realtime/jwt_plain.py) accepts exactly what PyJWT accepts, with the same claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from pushwire.realtime import jwt_plain

SECRET = b"s" * 32
OTHER = b"o" * 32
OPTIONS = {"verify_exp": False, "verify_iat": False, "verify_nbf": False, "enforce_minimum_key_length": True}
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(header_json: bytes, claims_json: bytes, key: bytes) -> str:
    signing_input = f"{_b64(header_json)}.{_b64(claims_json)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def pyjwt(token: str) -> dict[str, Any] | None:
    try:
        return jwt.decode(token, SECRET, algorithms=["HS256"], options=OPTIONS)  # type: ignore[arg-type]
    except jwt.PyJWTError:
        return None


def plain(token: str) -> tuple[bool, dict[str, Any] | None]:
    """(handled here, claims or None); not handled means PyJWT decides."""
    p = jwt_plain.parse(token)
    if p is None:
        return False, None
    if p.header.get("alg") != "HS256":  # tokens.py refuses any other alg for an HS256 key first
        return True, None
    return True, (p.claims if jwt_plain.hs256_valid(p, SECRET) else None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
claim_names = st.sampled_from(["sub", "app", "exp", "iat", "aud", "jti", "channels", "x"])
headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS256", "HS384", "none", "RS256"])},
    optional={"typ": st.sampled_from(["JWT", 1]), "kid": st.sampled_from(["k1", 5]), "crit": st.just(["b64"])},
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    header = draw(headers)
    claims = draw(st.dictionaries(claim_names, json_values, max_size=6))
    body = json.dumps(claims).encode()
    if draw(st.integers(0, 4)) == 0:
        body = draw(st.sampled_from([b"[1]", b'{"a":1,"a":2}', b'{"a":NaN}', b"\xef\xbb\xbf{}", b"1e400", b"{"]))
    token = _sign(json.dumps(header).encode(), body, draw(st.sampled_from([SECRET, SECRET, OTHER])))
    mutation = draw(st.sampled_from(["none", "none", "replace", "insert", "delete", "pad"]))
    if mutation == "none" or not token:
        return token
    i = draw(st.integers(0, len(token) - 1))
    ch = draw(st.sampled_from(list(B64 + "=.+/ ")))
    if mutation == "replace":
        return token[:i] + ch + token[i + 1 :]
    if mutation == "insert":
        return token[:i] + ch + token[i:]
    if mutation == "delete":
        return token[:i] + token[i + 1 :]
    return token + "="


@settings(max_examples=600, deadline=None)
@given(tokens())
def test_the_plain_path_agrees_with_pyjwt(token: str) -> None:
    handled, claims = plain(token)
    reference = pyjwt(token)
    if handled:
        assert claims == reference
    else:
        assert claims is None  # PyJWT decides these


def test_plain_tokens_are_handled_here() -> None:
    token = jwt.encode({"sub": "u1", "app": "1", "exp": 2}, SECRET, algorithm="HS256", headers={"kid": "k1"})
    assert plain(token) == (True, {"sub": "u1", "app": "1", "exp": 2})
    forged = _sign(b'{"alg":"HS256","kid":"k1"}', b'{"sub":"u1"}', OTHER)
    assert plain(forged) == (True, None)


def test_shapes_left_to_pyjwt() -> None:
    unusual = [
        _sign(b'{"alg":"HS256","crit":["b64"]}', b'{"sub":"u"}', SECRET),  # other header fields
        _sign(b'{"alg":"HS256"}', b'{"sub":"u","aud":"x"}', SECRET),  # aud: PyJWT refuses it
        _sign(b'{"alg":"HS256"}', b'{"sub":5}', SECRET),  # non-string sub
        _sign(b'{"alg":"HS256"}', b'{"exp":NaN}', SECRET),  # JSON only Python's parser takes
        _sign(b'{"alg":"HS256"}', b'{"sub":"u"}', SECRET) + "=",  # padding
        "a.b",
    ]
    for token in unusual:
        assert jwt_plain.parse(token) is None, token
