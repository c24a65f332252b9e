"""End-to-end latency across instances through the durable path (MariaDB + Kafka/Tansu + Redis + etcd).

Three `pushwire run` processes; a subscriber on instance 0; pushes through instances 1 and 2,
open loop at a fixed rate. Latency = receipt time - intended send time (no coordinated omission).

    .venv/bin/python -m bench.e2e_latency [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import websockets

from pushwire.storage.migrate import upgrade
from tests.conftest import _admin
from tests.distributed.cluster import cluster
from tests.services import MYSQL_SERVER_URL, unique

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else float("nan")


async def run(rate: int, seconds: float) -> dict[str, object]:
    accepted_ms: list[float] = []
    name = unique("pwbench_")
    await _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = f"{MYSQL_SERVER_URL}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        with tempfile.TemporaryDirectory() as logs:
            async with cluster(url, logs) as c:
                print("cluster up", flush=True)
                idle = [await websockets.connect(c.instances[i % 3].ws(c.token(f"idle{i}")), ping_interval=None) for i in range(300)]
                ws = await websockets.connect(c.instances[0].ws(c.token("sub", ["room.lat"])), ping_interval=None)
                await ws.send(json.dumps({"type": "subscribe", "channel": "room.lat"}))
                print("clients connected", flush=True)
                pushers = [c.pusher(1), c.pusher(2)]
                # warm up: routers join their groups and see the tenant topic
                await pushers[0].push(channels=["room.lat"], event="warm", data=0)
                async with asyncio.timeout(30):
                    while True:
                        f = json.loads(await ws.recv())
                        if f.get("event") == "warm":
                            break
                print("warm", flush=True)
                intended: dict[int, float] = {}
                latencies: list[float] = []
                n_total = int(rate * seconds)

                async def receive() -> None:
                    while len(latencies) < n_total:
                        f = json.loads(await ws.recv())
                        if f.get("type") == "ping":
                            await ws.send('{"type":"pong"}')
                        if f.get("type") == "message" and f["event"] == "lat":
                            latencies.append(time.perf_counter() - intended[f["data"]])

                accepted: list[float] = []

                async def timed_push(i: int) -> None:
                    await pushers[i % 2].push(channels=["room.lat"], event="lat", data=i)
                    accepted.append((time.perf_counter() - intended[i]) * 1000)

                receiver = asyncio.create_task(receive())
                start = time.perf_counter() + 0.2
                sends = []
                for i in range(n_total):
                    t = start + i / rate
                    intended[i] = t
                    delay = t - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sends.append(asyncio.create_task(timed_push(i)))
                await asyncio.gather(*sends)
                try:
                    async with asyncio.timeout(30):
                        await receiver
                except TimeoutError:
                    pass
                accepted_ms.extend(accepted)
                for s in idle:
                    await s.close()
                for p in pushers:
                    await p.close()
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {name}")
    ms = [x * 1000 for x in latencies]
    acc = accepted_ms
    return {
        "scenario": "e2e_latency",
        "rate": rate,
        "seconds": seconds,
        "sent": n_total,
        "received": len(ms),
        "p50_ms": round(pct(ms, 0.50), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "p999_ms": round(pct(ms, 0.999), 2),
        "max_ms": round(max(ms) if ms else float("nan"), 2),
        "push_202_p50_ms": round(pct(acc, 0.50), 2),
        "push_202_p99_ms": round(pct(acc, 0.99), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    result = asyncio.run(run(a.rate, a.seconds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{time.strftime('%Y-%m-%d')}-e2e_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:>12}: {v}")


if __name__ == "__main__":
    main()
