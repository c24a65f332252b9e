"""Encryption at rest for key secrets.

Server-key secrets verify HMAC signatures, which needs the secret itself, so they cannot be
hashed: they are sealed with AES-256-GCM under a key derived from PUSHWIRE_SECRET_KEY.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


class SecretBox:
    def __init__(self, server_secret: str, purpose: bytes = b"pushwire key secrets v1") -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(server_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, bound_to: str) -> bytes:
        """`bound_to` (the key id) is authenticated, so a sealed secret cannot be moved to another key row."""
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), bound_to.encode())

    def open(self, sealed: bytes, bound_to: str) -> str:
        if sealed[:1] != _VERSION:
            raise ValueError("unknown sealed-secret version")
        return self._aead.decrypt(sealed[1:13], sealed[13:], bound_to.encode()).decode()
