"""Signing: the spec's test vector, canonical queries, and the SDK/server round trip (hypothesis)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from pushwire.sdk.server import signed_headers
from pushwire.tenants.signing import canonical_query, canonical_query_from_string, sign

VECTOR = "0a0bf13b1ff9446315e0044d9417ee66498c494c00c25e7f097b12094e639857"


def test_spec_test_vector() -> None:
    assert sign("s3cret", "POST", "/api/v1/push", "", "1700000000", "abcdefghijklmnop", b"{}") == VECTOR
    h = signed_headers(
        "sk_1", "s3cret", "POST", "/api/v1/push", body=b"{}", timestamp=1700000000, nonce="abcdefghijklmnop"
    )
    assert h["X-Pushwire-Signature"] == VECTOR


def test_docs_show_the_same_vector() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "server-api.md").read_text()
    assert VECTOR in doc
    assert re.search(r"openssl dgst -sha256 -hmac", doc)


def test_canonical_query_encoding_and_order() -> None:
    assert canonical_query([("b", "2"), ("a", "x y"), ("a", "é"), ("A", "~")]) == "A=~&a=%C3%A9&a=x%20y&b=2"
    assert canonical_query([]) == ""
    assert canonical_query_from_string("user=b&user=a+c&x=%2F") == "user=a%20c&user=b&x=%2F"


pairs = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=8)


@given(pairs, st.randoms())
def test_canonical_query_ignores_parameter_order(items: list[tuple[str, str]], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert canonical_query(items) == canonical_query(shuffled)


@given(pairs, st.binary(max_size=64), st.text(min_size=1, max_size=20))
def test_sdk_signature_verifies_on_the_server_side(items: list[tuple[str, str]], body: bytes, secret: str) -> None:
    """What the SDK signs from its pairs equals what the server recomputes from the query string sent."""
    h = signed_headers("sk_x", secret, "GET", "/api/v1/presence", items, body)
    wire_query = urlencode(items)
    server = sign(
        secret,
        "GET",
        "/api/v1/presence",
        canonical_query_from_string(wire_query),
        h["X-Pushwire-Timestamp"],
        h["X-Pushwire-Nonce"],
        body,
    )
    assert server == h["X-Pushwire-Signature"]
