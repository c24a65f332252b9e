"""`pushwire run` with permessage-deflate on — the one setting `pushwire run` does not expose.

    python -m bench.peers.pushwire_server --port P   (PUSHWIRE_* env as for `pushwire run`)

Same app and uvicorn options as `pushwire/cli/server.py`, with `ws_per_message_deflate=True`;
used only by the memory scenario's compression-on runs.
"""

from __future__ import annotations

import argparse

import uvicorn

from pushwire.app import create_app
from pushwire.cli.common import settings_or_exit

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvicorn.run(
        create_app(settings_or_exit()),
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=True,
        ws_max_size=64 * 1024,
        # No per-connection ping timer: the hub's one tick pings quiet clients (realtime/hub.py).
        ws_ping_interval=None,
        lifespan="on",
    )
