"""Client libraries: the signed server API client (server.py) and the realtime client (realtime.py)."""

from pushwire.sdk.realtime import RealtimeClient
from pushwire.sdk.server import AsyncServerClient, PushwireError, ServerClient, signed_headers

__all__ = ["AsyncServerClient", "PushwireError", "RealtimeClient", "ServerClient", "signed_headers"]
