"""memory: server RSS per idle WebSocket connection at 1,000 and 5,000 connections, compression off and on.

For each server (Pushwire single-node, python-socketio, bare websockets, bare picows — picows has
no compression) and each compression setting: start it on CPU 0, warm it with 20 connections
opened and closed, read its RSS (/proc/<pid>/status), open idle clients up to each count, settle
`SETTLE` s, read RSS again. KiB/conn = (RSS − warm idle RSS) / connections. Clients use the
`websockets` library (it can offer permessage-deflate; picows cannot) and complete each
dialect's greeting, so every connection is fully established. Compression on is measured for
Pushwire and the websockets limit only (`DEFLATE_SERVERS`). Target: Pushwire ≤ 16 KiB, off.
Then all close, the largest count opens again (new users) and closes again, with RSS after each:
whether memory that stays after closing is reused or leaked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import harness as h
from bench import servers as S

NAME = "memory"
TARGET_KIB = 16.0
SETTLE = 2.0
WARM = 20
DEFLATE_SERVERS = ("pushwire", "websockets")  # picows has no deflate; socketio's is left out to save time


async def open_one(url: str, dialect: str, deflate: bool) -> ClientConnection:
    ws = await connect(
        url, compression="deflate" if deflate else None, ping_interval=None, open_timeout=30, max_size=2**20
    )
    if dialect == "socketio":
        await asyncio.wait_for(ws.recv(), 10)  # 0{…}
        await ws.send("40")
        await asyncio.wait_for(ws.recv(), 10)  # 40{…}
    elif dialect == "pushwire":
        first = await asyncio.wait_for(ws.recv(), 10)
        if '"welcome"' not in str(first):
            raise ConnectionError(f"no welcome: {str(first)[:80]}")
    return ws


async def grow(conns: list[ClientConnection], url_for: Any, dialect: str, deflate: bool, total: int) -> None:
    sem = asyncio.Semaphore(100)
    failed: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            try:
                conns.append(await open_one(url_for(i), dialect, deflate))
            except Exception as exc:
                failed.append(f"{type(exc).__name__}: {exc}"[:100])

    await asyncio.gather(*(one(i) for i in range(len(conns), total)))
    if len(conns) < 0.99 * total:
        raise RuntimeError(f"{dialect}: only {len(conns)} of {total} idle clients connected, e.g. {failed[:2]}")


async def close_all(conns: list[ClientConnection]) -> None:
    async def one(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in conns))
    conns.clear()


async def measure(pid: int, url_for: Any, dialect: str, deflate: bool, counts: list[int]) -> dict[str, Any]:
    warm: list[ClientConnection] = []
    await grow(warm, url_for, dialect, deflate, WARM)
    await close_all(warm)
    await asyncio.sleep(SETTLE)
    idle = h.rss_kib(pid)
    conns: list[ClientConnection] = []
    points = []
    try:
        for n in sorted(counts):
            await grow(conns, url_for, dialect, deflate, n)
            await asyncio.sleep(SETTLE)
            rss = h.rss_kib(pid)
            points.append(
                {
                    "clients": len(conns),
                    "server_rss_kib": rss,
                    "kib_per_connection": round((rss - idle) / len(conns), 2),
                }
            )
            print(
                f"  {dialect:<9} deflate={'on ' if deflate else 'off'} {len(conns):>6,} idle → RSS {rss / 1024:7.1f} MiB "
                f"· {points[-1]['kib_per_connection']:6.2f} KiB/conn",
                flush=True,
            )
    finally:
        await close_all(conns)
    # Closed, then the largest count again with new users and closed again: RSS that does not grow
    # in the second cycle is memory the allocator kept for reuse, not a leak (issue 15 soaks it longer).
    await asyncio.sleep(SETTLE)
    after_close = h.rss_kib(pid)
    peak = max(counts)
    await grow(conns, lambda i: url_for(i + 1_000_000), dialect, deflate, peak)
    await asyncio.sleep(SETTLE)
    reopened = h.rss_kib(pid)
    await close_all(conns)
    await asyncio.sleep(SETTLE)
    after_second_close = h.rss_kib(pid)
    print(
        f"  {dialect:<9} deflate={'on ' if deflate else 'off'} closed → RSS {after_close / 1024:7.1f} MiB; "
        f"{peak:,} new users open again → {reopened / 1024:7.1f} MiB; closed again → {after_second_close / 1024:7.1f} MiB",
        flush=True,
    )
    return {
        "server_rss_kib_idle_warm": idle,
        "points": points,
        "after_close_kib": after_close,
        "reopened_kib": reopened,
        "after_second_close_kib": after_second_close,
    }


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    runs = []
    for name in [s for s in args.servers if s != "litestar-ws"]:  # the floor peer serves connects only
        for deflate in (False, True):
            if deflate and name not in DEFLATE_SERVERS:
                continue
            print(f"\n[{NAME}] {S.LABELS[name]} compression {'on' if deflate else 'off'}", flush=True)
            if name == "pushwire":
                with h.backend("sqlite") as b:
                    app = h.create_bench_app(b)
                    with S.pushwire_deflate(b) if deflate else h.Server(b) as srv:
                        base = f"ws://127.0.0.1:{srv.port}/api/v1/ws?token="
                        res = h.run_async(
                            measure(
                                srv.pid,
                                lambda i, base=base, app=app: base + app.token(f"m{i}"),
                                "pushwire",
                                deflate,
                                args.clients,
                            )
                        )
            else:
                with S.peer(name, deflate) as proc:
                    res = h.run_async(
                        measure(
                            proc.pid,
                            lambda i, p=proc.port, name=name: S.peer_url(name, p),
                            S.dialect(name),
                            deflate,
                            args.clients,
                        )
                    )
            runs.append({"server": name, "compression": deflate, **res})
    return {
        "settings": {"clients": args.clients, "settle_s": SETTLE, "warm_connections": WARM},
        "target_kib_per_connection": TARGET_KIB,
        "runs": runs,
    }
