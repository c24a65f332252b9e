"""Server keys held in process, so a signed request reads no database row.

An entry holds what verification needs (the unsealed secret, scopes, parsed allow-list, the
app's view with its limits and state) and the app's *stamp*: a random value the tenancy service
rewrites in the shared cache on every change of the app or its keys (tenants/changes.py). Each
request reads the current stamp in the same cache round trip as its nonce (Cache.admit); an
entry whose stamp differs is reloaded before the request is answered, so a revocation on any
instance holds from the very next request everywhere. The registry watch also drops an app's
entries when a change notice arrives, and entries older than MAX_AGE are reloaded whatever the
stamp says (the cache is not the source of truth: it may lose the stamp on a failover), or older
than UNSHARED_MAX_AGE when the cache is the single node's own (the CLI cannot restamp it).
"""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec

from pushwire.tenants.ip_allow import Network
from pushwire.tenants.views import AppView

MAX_ENTRIES = 10_000
MAX_AGE = 30.0
# With a cache only this process sees (the single node's memory engine), a change made by another
# process (the CLI) restamps nothing here: entries are then reloaded this often instead.
UNSHARED_MAX_AGE = 1.0
# Never equal to a stamp read from the cache: an entry loaded before its stamp was read (the first
# load of a key, when its app is not known yet) is reloaded once the request has read the stamp.
UNVERIFIED = b"\x00unverified"


class KeyEntry(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    secret: str
    scopes: frozenset[str]
    allow: tuple[Network, ...]
    is_operator: bool
    app: AppView
    tenant_disabled: bool
    stamp: bytes  # the app's stamp read before this entry's rows were
    loaded: float  # time.monotonic()


class KeyCache:
    """key id → KeyEntry, least recently used dropped past MAX_ENTRIES."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: OrderedDict[str, KeyEntry] = OrderedDict()
        self.loads = 0  # database loads (tests and metrics)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_id: str) -> KeyEntry | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if time.monotonic() - entry.loaded > self.max_age:
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return entry

    def put(self, entry: KeyEntry) -> None:
        self.loads += 1
        self._entries[entry.key_id] = entry
        self._entries.move_to_end(entry.key_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        self._entries.pop(key_id, None)

    def forget_app(self, app_id: str) -> None:
        for key_id in [k for k, e in self._entries.items() if e.app.app_id == app_id]:
            del self._entries[key_id]
