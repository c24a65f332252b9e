"""recovery: time to replay K missed messages on reconnect, from Redis and from the database; a reconnect herd.

One Pushwire instance on CPU 0, backend `durable` (MariaDB + Redis + Kafka/Tansu + etcd). For each
K (100, 1,000, 10,000): a fresh room `room.kK` gets K messages through the batch push API; a live
watcher confirms all K went through the outbox relay (so the Redis hot history holds what it
keeps — the newest `hot_history_size`, 1,000 by default). Then a connected client sends
`subscribe` with `since` = the epoch at offset 0 and the time until its K-th replayed message
arrives is measured (3 trials, median). `from redis`: as is; `from database`: Redis db flushed
before each trial. Herd (`--herd`, 5,000 by default; 3 trials, median): that many new clients connect at once, each
subscribing with `since` 100 behind the top of `room.herd`; time from the first connect until
the last client has all 100.
Targets: 1,000 from Redis ≤ 100 ms; 10,000 from the database ≤ 1 s; herd ≤ 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench import harness as h
from bench import loadgen as L
from pushwire.cli.tenancy import mint_token

NAME = "recovery"
TRIALS = 3
HERD_MISSED = 100


class Ctx:
    def __init__(self, server: h.Server, app: h.BenchApp) -> None:
        self.server, self.app = server, app
        self.base = f"ws://127.0.0.1:{server.port}/api/v1/ws?token="

    async def client(self, user: str) -> L.Client:
        token = mint_token(self.app.app_id, user, self.app.kid, self.app.client_secret, 3600, ["room.*"])
        c = await L.connect(self.base + token, L.Stats(sample_every=10**9), "pushwire")
        c.keep_control = True
        return c

    async def subscribed(
        self, c: L.Client, channel: str, since: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        c.frames.clear()
        c.send(json.dumps({"type": "subscribe", "channel": channel, **({"since": since} if since else {})}))
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if c.transport is None or c.transport.is_disconnected:
                raise ConnectionError(f"closed by the server before `subscribed`: {dict(c.stats.closes)}")
            for f in c.frames:
                if f.startswith(b'{"type":"subscribed"'):
                    return json.loads(f)
            await asyncio.sleep(0.002)
        raise RuntimeError(f"recovery: no `subscribed` for {channel} within {timeout:.0f} s")

    async def publish(self, channel: str, k: int) -> None:
        signer = h.Signer(self.app.key_id, self.app.key_secret)
        async with h.posters("raw", self.server.port, signer, 4) as ps:

            async def batch(p: Any, start: int, end: int) -> None:
                items = ",".join(
                    f'{{"channels":["{channel}"],"event":"r","data":{{"i":{i},"p":"{"x" * 60}"}}}}'
                    for i in range(start, end)
                )
                status, body = await p.post("/api/v1/push/batch", f'{{"messages":[{items}]}}'.encode())
                if status != 200 or body.count(b'"status":202') != end - start:
                    raise RuntimeError(f"recovery: batch push refused ({status}): {body[:200]!r}")

            for s in range(0, k, 400):
                await asyncio.gather(
                    *(batch(ps[j], a, min(a + 100, k)) for j, a in enumerate(range(s, min(s + 400, k), 100)))
                )


async def wait_for(clients: list[L.Client], timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(c.done_at for c in clients):
            return max(c.done_at for c in clients)
        if all(c.done_at or c.transport is None or c.transport.is_disconnected for c in clients):
            return None  # the rest were closed: they will never catch up
        await asyncio.sleep(0.001)
    return None


async def replay_trials(ctx: Ctx, channel: str, epoch: str, k: int, flush: bool) -> list[dict[str, Any]]:
    out = []
    for t in range(TRIALS):
        if flush:
            await h._flush_redis()
        c = await ctx.client(f"r{k}{flush}{t}")
        c.target = k
        t0 = time.monotonic()
        try:
            sub = await ctx.subscribed(c, channel, {"epoch": epoch, "offset": 0})
            done = await wait_for([c], 60.0)
        except ConnectionError as exc:
            sub, done = {"error": str(exc)}, None
        c.close()
        if done is None:  # a failed trial counts as infinitely slow in the median
            out.append(
                {"ms": None, "received": c.messages, "error": sub.get("error") or f"closes {dict(c.stats.closes)}"}
            )
            continue
        out.append(
            {"ms": round((done - t0) * 1000, 2), "recovered": sub.get("recovered"), "replayed": sub.get("replayed")}
        )
    return out


def median_ms(trials: list[dict[str, Any]]) -> float | None:
    """Median with failed trials (ms None) counted as infinite: None when most trials failed."""
    vals = sorted(trials, key=lambda t: float("inf") if t["ms"] is None else t["ms"])
    return vals[len(vals) // 2]["ms"]


async def scenario(ctx: Ctx, args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    watcher = await ctx.client("watcher")
    res: dict[str, Any] = {"replay": []}
    for k in args.recovery_k:
        ch = f"room.k{k}"
        epoch = (await ctx.subscribed(watcher, ch))["epoch"]
        watcher.messages, watcher.target, watcher.done_at = 0, k, 0.0
        t0 = time.monotonic()
        await ctx.publish(ch, k)
        if await wait_for([watcher], 120.0) is None:
            raise RuntimeError(f"recovery: only {watcher.messages} of {k} messages went live within 120 s")
        print(f"  K={k:,}: published and relayed in {time.monotonic() - t0:.1f} s", flush=True)
        for flush in (False, True):
            trials = await replay_trials(ctx, ch, epoch, k, flush)
            med = median_ms(trials)
            print(
                f"  K={k:>6,} from {'database' if flush else 'redis   '}: {med} ms (trials {[t['ms'] for t in trials]})",
                flush=True,
            )
            failed = [t for t in trials if t["ms"] is None]
            if failed:
                notes.add(
                    f"recovery K={k} from {'database' if flush else 'redis'}: {len(failed)} of {TRIALS} trials "
                    f"failed: {failed[0]['error']} after {failed[0]['received']} messages"
                )
            elif any(t["recovered"] is not True for t in trials):
                notes.add(f"recovery K={k} flush={flush}: recovered was not true: {trials}")
            res["replay"].append(
                {"k": k, "source": "database" if flush else "redis", "trials": trials, "median_ms": med}
            )
    # herd: everyone 100 behind the top of room.herd
    sub = await ctx.subscribed(watcher, "room.herd")
    watcher.messages, watcher.target, watcher.done_at = 0, HERD_MISSED, 0.0
    await ctx.publish("room.herd", HERD_MISSED)
    if await wait_for([watcher], 60.0) is None:
        raise RuntimeError("recovery: herd messages did not go live within 60 s")
    since = {"epoch": sub["epoch"], "offset": sub["offset"]}
    watcher.close()
    trials = []
    for k in range(TRIALS):
        trials.append(await herd_trial(ctx, args, since, k, notes))
        await asyncio.sleep(2.0)  # closes settle before the next herd
    ranked = sorted(trials, key=lambda t: float("inf") if t["all_caught_up_s"] is None else t["all_caught_up_s"])
    mid = ranked[len(ranked) // 2]
    res["herd"] = {
        "clients": args.herd,
        "missed_each": HERD_MISSED,
        "trials": trials,
        # The median trial's figures (a trial that did not catch up counts as infinitely slow).
        "connected_s": mid["connected_s"],
        "caught_up": mid["caught_up"],
        "all_caught_up_s": mid["all_caught_up_s"],
    }
    return res


async def herd_trial(
    ctx: Ctx, args: argparse.Namespace, since: dict[str, Any], k: int, notes: h.Notes
) -> dict[str, Any]:
    """`args.herd` new clients connect at once, each subscribing with `since` (HERD_MISSED behind)."""
    herd: list[L.Client] = []
    failed: list[str] = []

    async def one(i: int) -> None:
        try:
            c = await ctx.client(f"h{k}-{i}")
        except Exception as exc:
            failed.append(str(exc)[:80])
            return
        c.target = HERD_MISSED
        c.send(json.dumps({"type": "subscribe", "channel": "room.herd", "since": since}))
        herd.append(c)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.herd)))
    connected = time.monotonic() - t0
    done = await wait_for(herd, 60.0)
    caught = sum(1 for c in herd if c.done_at)
    for c in herd:
        c.close()
    if failed:
        notes.add(f"recovery herd: {len(failed)} of {args.herd} clients failed to connect, e.g. {failed[0]}")
    print(
        f"  herd {k + 1} of {args.herd:,}: all connected in {connected:.1f} s, {caught:,} caught up"
        f"{f' in {done - t0:.2f} s' if done else ' (not all within 60 s)'}",
        flush=True,
    )
    if done is None:
        notes.add(f"recovery herd: only {caught} of {args.herd} clients caught up within 60 s")
    return {
        "connected_s": round(connected, 2),
        "caught_up": caught,
        "all_caught_up_s": round(done - t0, 2) if done else None,
    }


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    print(f"\n[{NAME}] durable path, K = {args.recovery_k}, herd of {args.herd:,}", flush=True)
    with h.backend("durable") as b:
        app = h.create_bench_app(b)
        with h.Server(b) as server:
            out = h.run_async(scenario(Ctx(server, app), args, notes))
            errors = server.log_errors()
            if errors:
                notes.add(f"recovery: server logged errors, e.g. {errors[0][:160]}")
    return {
        "settings": {
            "k": args.recovery_k,
            "trials": TRIALS,
            "herd": args.herd,
            "herd_missed": HERD_MISSED,
            "backend": b.label,
        },
        "targets_ms": {"redis_1000": 100, "database_10000": 1000, "herd": 10000},
        **out,
    }
