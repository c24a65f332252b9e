"""By hand: RSS growth of a server flooded with old-`since` subscribes on a socket that does not read.

    .venv/bin/python -m tests.realtime.replay_flood [messages] [subscribes]

Runs a single-node server (SQLite, memory backends) in this process, fills `room.flood` with
~300-byte messages, then sends `subscribes` frames `{"type":"subscribe","since":{offset 0}}`
from a client that never reads, and prints the peak RSS growth over the next seconds. Not a
test (the figure depends on the machine); tests/realtime/test_replay_bounds.py asserts the bound.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time

import msgspec
import websockets

from pushwire.messaging.publish import PublishRequest
from pushwire.storage.migrate import upgrade
from tests.live import live_server

DATA = msgspec.Raw(b'"' + b"x" * 180 + b'"')  # with the envelope, ~300-byte message frames


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def main(messages: int, subscribes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/flood.db"
        await asyncio.to_thread(upgrade, url)
        env = {"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789"}
        async with live_server(env) as live:
            rt = live.runtime
            for start in range(0, messages, 500):
                reqs = [PublishRequest(channels=("room.flood",), event="e", data=DATA) for _ in range(500)]
                await rt.publisher.publish_many(live.tenant_id, live.app_id, reqs[: messages - start])
            rt.notify_published()
            state = (await rt.history.states(live.app_id, ["room.flood"]))["room.flood"]
            await asyncio.sleep(2)  # the relay's work done
            ws = await websockets.connect(
                live.ws_url(live.token("flooder", ["room.*"])), max_queue=1, max_size=None, compression=None
            )
            await ws.recv()  # welcome; nothing is read after this
            base = peak = rss_bytes()
            frame = json.dumps(
                {"type": "subscribe", "channel": "room.flood", "since": {"epoch": state.epoch, "offset": 0}}
            )
            for _ in range(subscribes):
                await ws.send(frame)
            closed_at = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                peak = max(peak, rss_bytes())
                session = next((s for s in rt.hub.sessions.values() if s.user_id == "flooder"), None)
                if session is None and closed_at is None:
                    closed_at = time.monotonic()
            print(
                f"messages={messages} subscribes={subscribes} frames sent={subscribes * len(frame)} B "
                f"rss before={base / 2**20:.1f} MiB peak={peak / 2**20:.1f} MiB "
                f"growth={(peak - base) / 2**20:.1f} MiB session closed={closed_at is not None}"
            )
            await ws.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [10_000, 60][len(args) :])))
