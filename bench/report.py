"""The summary of one `python -m bench` run (figures with targets and ratios) and its markdown table."""

from __future__ import annotations

from typing import Any

PEER, LIMIT, CEILING = "socketio", "websockets", "picows"
NATIVE, PUSHER = "pushwire", "pusher"  # Pushwire's own protocol and Pushwire over the Pusher protocol (issue 14)
# the fan-out rows' order at one count: native broadcast, then the Pusher protocol beside it, then unicast
_FANOUT_ORDER = {NATIVE: 0, PUSHER: 1, "pushwire-unicast": 2}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _beside(v: float | None, n: int, fo: dict[tuple[str, int], dict[str, Any]], pick: Any) -> dict[str, Any]:
    """The peer, limit and ceiling figures of the same run at `n` clients (`pick` reads one) and
    Pushwire's ratios to them."""
    peer, lim, ceil = (pick(fo.get((k, n), {})) for k in (PEER, LIMIT, CEILING))
    return {
        "peer": peer,
        "limit": lim,
        "ceiling": ceil,
        "vs_peer": _ratio(v, peer),
        "vs_limit": _ratio(v, lim),
        "vs_ceiling": _ratio(v, ceil),
    }


def _vs_native(row: dict[str, Any], native: float | None) -> None:
    """A Pusher-protocol row: native Pushwire's figure at the same count and the ratio to it (also in the notes)."""
    row["native"] = native
    row["vs_native"] = _ratio(row["value"], native)
    if native:
        text = f"native Pushwire {native:,.0f}/s, × native {_c(row['vs_native'])}"
        row["detail"] = f"{text}; {row['detail']}" if row.get("detail") else text


def _fanout(doc: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    runs = doc["scenarios"].get("fanout", {}).get("runs", [])
    return {(r["server"], r["clients"]): r for r in runs}


def summary(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: figure, value, unit, target, met, ratio to the peer, ratio to the limit(s), flags."""
    rows: list[dict[str, Any]] = []
    sc = doc["scenarios"]
    fo = _fanout(doc)
    for (server, n), r in sorted(fo.items(), key=lambda kv: (kv[0][1], _FANOUT_ORDER.get(kv[0][0], 9), kv[0][0])):
        if server not in _FANOUT_ORDER:
            continue
        kind = {NATIVE: "broadcast fan-out", PUSHER: "Pusher-protocol fan-out (channel bench)"}.get(
            server, "unicast fan-out"
        )
        native = fo.get((NATIVE, n), {})
        for key, what in (
            ("sustainable_per_s", "sustainable (p99 ≤ 100 ms)"),
            ("throughput_per_s", "throughput (≥ 99.9 % delivered, any p99)"),
        ):
            v = r.get(key)
            row = {
                "figure": f"{kind}, {n:,} clients, {what}",
                "value": v,
                "unit": "deliveries/s",
                **_beside(v, n, fo, lambda other, key=key: other.get(key)),
                "generator_bound": r["generator_bound"],
            }
            peer, lim = row["peer"], row["limit"]
            if key == "throughput_per_s" and r.get("throughput_p99_ms") is not None:
                row["detail"] = f"p99 there {r['throughput_p99_ms']} ms"
            if server == "pushwire" and key == "throughput_per_s" and lim:
                row["target"] = "≥ 1.0 × websockets"  # issue 13: per-message broadcast
                row["met"] = bool(row["vs_limit"] and row["vs_limit"] >= 1.0)
            elif server == "pushwire" and n >= 5000 and peer:
                row["target"] = "≥ 0.8 × websockets, ≥ 3 × socketio"
                row["met"] = bool(row["vs_limit"] and row["vs_limit"] >= 0.8 and row["vs_peer"] and row["vs_peer"] >= 3)
            elif server == PUSHER:  # issue 14 sets no figure: the same ratios as native, shown beside them
                row["target"] = "– (beside native)"
                _vs_native(row, native.get(key))
            rows.append(row)
        b = r.get("batched")
        if server in (NATIVE, PUSHER) and b:
            v = b["deliveries_per_s"]
            beside = _beside(v, n, fo, lambda other: other.get("batched", {}).get("deliveries_per_s"))
            row = {
                "figure": f"batched {kind}, {n:,} clients ({b['messages']:,} messages, 100 per push)",
                "value": v,
                "unit": "deliveries/s",
                "target": "≥ 1.0 × websockets" if beside["limit"] else "–",
                "met": bool(beside["vs_limit"] and beside["vs_limit"] >= 1.0) if beside["limit"] else None,
                **beside,
                "detail": f"{b['delivered_pct']} % delivered",
                "generator_bound": b["generator_bound"],
            }
            if server == PUSHER:
                row.update(target="– (beside native)", met=None)
                _vs_native(row, native.get("batched", {}).get("deliveries_per_s"))
            rows.append(row)
    e2e = sc.get("e2e", {})
    idle_rate = e2e.get("idle_rate", 20)
    for rate in e2e.get("rates", []):
        m = rate["median"]
        lost = rate.get("lost")
        detail = f"p50 {m['p50_ms']} · p99 {m['p99_ms']} · p99.9 {m['p999_ms']} · max {m['max_ms']} ms"
        if lost is not None:
            detail += f"; lost {lost} of {rate['sent']:,} (missing {rate['missing']}, non-2xx {rate['non_2xx']})"
        if rate["rate"] == idle_rate:
            rows.append(
                {
                    "figure": f"end-to-end p50 at idle ({rate['rate']:,} pushes/s, durable path)",
                    "value": m["p50_ms"],
                    "unit": "ms",
                    "target": f"≤ {e2e.get('target_idle_p50_ms', 5.0):g} ms",
                    "met": m["p50_ms"] <= e2e.get("target_idle_p50_ms", 5.0),
                    "detail": detail,
                    "generator_bound": rate["generator_bound"],
                }
            )
            continue
        row = {
            "figure": f"end-to-end p99, {rate['rate']:,} pushes/s (durable path)",
            "value": m["p99_ms"],
            "unit": "ms",
            "detail": detail,
            "generator_bound": rate["generator_bound"],
        }
        if rate["rate"] == 1000:
            row.update(target="≤ 20 ms, nothing lost", met=m["p99_ms"] <= 20 and not lost and not rate.get("missing"))
        rows.append(row)
    mem = sc.get("memory", {}).get("runs", [])
    by = {(r["server"], r["compression"], p["clients"]): p["kib_per_connection"] for r in mem for p in r["points"]}
    for (server, comp, n), v in sorted(by.items()):
        if server != "pushwire":
            continue
        peer, lim, ceil = (by.get((k, comp, n)) for k in (PEER, LIMIT, CEILING))
        row = {
            "figure": f"memory per idle connection, {n:,}, compression {'on' if comp else 'off'}",
            "value": v,
            "unit": "KiB",
            "peer": peer,
            "limit": lim,
            "ceiling": ceil if not comp else None,
            "vs_peer": _ratio(v, peer),
            "vs_limit": _ratio(v, lim),
            "vs_ceiling": _ratio(v, ceil) if not comp else None,
        }
        if not comp:
            row.update(target="≤ 16 KiB", met=v <= 16)
        rows.append(row)
    for r in mem:
        if r["server"] == "pushwire" and "after_close_kib" in r:
            mib = {k: round(r[k] / 1024, 1) for k in ("after_close_kib", "reopened_kib", "after_second_close_kib")}
            rows.append(
                {
                    "figure": f"RSS after closing all, compression {'on' if r['compression'] else 'off'}",
                    "value": mib["after_close_kib"],
                    "unit": "MiB",
                    "detail": f"open again (new users) {mib['reopened_kib']} MiB, closed again "
                    f"{mib['after_second_close_kib']} MiB; idle before {round(r['server_rss_kib_idle_warm'] / 1024, 1)} MiB",
                }
            )
    con = sc.get("connects", {})
    cruns = {r["server"]: r for r in con.get("runs", [])}
    if "pushwire" in cruns:
        r = cruns["pushwire"]
        lim = cruns.get(LIMIT, {}).get("per_s")
        floor = cruns.get("litestar-ws", {}).get("per_s")
        detail = f"{r['server_cpu_us_per_connect']:,.0f} µs server CPU per connect"
        if floor:
            detail += f"; bare Litestar WebSocket route on uvicorn: {floor:,.0f}/s ({_ratio(r['per_s'], floor)} ×)"
        rows.append(
            {
                "figure": f"connects/s ({con['settings']['clients']:,} new users, {con['settings']['in_flight']} in flight)",
                "value": r["per_s"],
                "unit": "connects/s",
                "ceiling": cruns.get(CEILING, {}).get("per_s"),
                "limit": lim,
                "vs_limit": _ratio(r["per_s"], lim),
                "target": "≥ 0.5 × websockets",
                "met": bool(lim and r["per_s"] >= 0.5 * lim),
                "detail": detail,
            }
        )
    rec = sc.get("recovery", {})
    lrange = sc.get("limits", {}).get("requests_per_s", {})
    lr = next((v for k, v in lrange.items() if k.startswith("LRANGE_100")), None)
    for r in rec.get("replay", []):
        # the limit: the time redis-benchmark's LRANGE_100 throughput needs to return K entries
        lim_ms = round(1000.0 * r["k"] / (100 * lr), 2) if lr else None
        row = {
            "figure": f"replay {r['k']:,} missed from {r['source']}",
            "value": r["median_ms"],
            "unit": "ms",
            "limit": lim_ms if r["source"] == "redis" else None,
            "vs_limit": _ratio(r["median_ms"], lim_ms) if r["source"] == "redis" else None,
        }
        v = r["median_ms"]
        if r["k"] == 1000 and r["source"] == "redis":
            row.update(target="≤ 100 ms", met=v is not None and v <= 100)
        if r["k"] == 10000 and r["source"] == "database":
            row.update(target="≤ 1 s", met=v is not None and v <= 1000)
        failed = [t for t in r["trials"] if t["ms"] is None]
        if failed:
            row["detail"] = f"{len(failed)} of {len(r['trials'])} trials failed: {failed[0]['error']}"
        rows.append(row)
    if rec.get("herd"):
        hd = rec["herd"]
        v = hd["all_caught_up_s"]
        rows.append(
            {
                "figure": f"herd of {hd['clients']:,} reconnecting, {hd['missed_each']} missed each, all caught up",
                "value": v,
                "unit": "s",
                "target": "≤ 10 s",
                "met": v is not None and v <= 10,
                "detail": f"connected in {hd['connected_s']} s; {hd['caught_up']:,} caught up"
                + (f"; trials {[t['all_caught_up_s'] for t in hd['trials']]} s" if hd.get("trials") else ""),
            }
        )
    pa = {r.get("server", "pushwire"): r for r in sc.get("push_api", {}).get("runs", [])}
    pw, ref = pa.get("pushwire"), pa.get("reference")
    for mode in ("single", "batch") if pw else ():
        x = pw[mode]
        lim = ref[mode] if ref else {}
        detail = (
            f"{x['server_cpu_us_per_push']} µs server CPU per push ({x['stack_cpu_us_per_push']} µs with the "
            f"stack; limit {lim.get('server_cpu_us_per_push')}) · p50 {x['p50_ms']} · p99 {x['p99_ms']} ms · "
            f"generator {x['cpu_pct'].get('generator')} % CPU"
        )
        if x["errors"]:
            detail += f" · non-2xx {x['errors']}"
        rows.append(
            {
                "figure": f"push API, {'single pushes' if mode == 'single' else 'batches of 100'} "
                f"({x['connections']} connections, full stack)",
                "value": x["messages_per_s"],
                "unit": "messages/s",
                "limit": lim.get("messages_per_s"),
                "vs_limit": x.get("vs_limit"),
                "target": x.get("target"),
                "met": x.get("meets_target"),
                "detail": detail,
                "generator_bound": x["generator_bound"] or bool(lim.get("generator_bound")),
            }
        )
    return rows


def _c(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "**yes**" if v else "no"
    if isinstance(v, float) and v >= 100:
        return f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v}"


def markdown(doc: dict[str, Any], pngs: list[str]) -> str:
    m = doc["machine"]
    out = [
        f"## Benchmark results — {doc['started_at'][:16].replace('T', ' ')} UTC",
        "",
        f"`{doc['command']}` on {m['cpus']} × {m['cpu_model']}, Python {m['python']}; every server alone on CPU "
        f"{m['server_cpu']} with one worker, generator and publisher on CPU {m['generator_cpu']}. "
        f"**Shared machine**: {doc['shared_machine']} — figures are noisy. Medians of 3 trials.",
        "",
        "| figure | Pushwire | target | met | peer (socketio) | × peer | limit (websockets; push API: bare "
        "signed POST) | × limit "
        "| picows ceiling | × ceiling | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["summary"]:
        note = r.get("detail", "")
        if r.get("generator_bound"):
            note = (note + "; " if note else "") + "generator-bound"
        out.append(
            f"| {r['figure']} | {_c(r['value'])} {r['unit']} | {r.get('target', '–')} | {_c(r.get('met'))} | "
            f"{_c(r.get('peer'))} | {_c(r.get('vs_peer'))} | {_c(r.get('limit'))} | {_c(r.get('vs_limit'))} | "
            f"{_c(r.get('ceiling'))} | {_c(r.get('vs_ceiling'))} | {note} |"
        )
    fo = doc["scenarios"].get("fanout", {}).get("runs", [])
    if fo:
        out += [
            "",
            "### Fan-out per server: sustainable (≥ 99.9 % delivered, p99 ≤ 100 ms) and throughput "
            "(≥ 99.9 % delivered, any p99)",
            "",
            "| server | clients | sustainable deliveries/s | throughput deliveries/s | p99 at throughput ms | "
            "peak delivered/s | batched (100 per push) deliveries/s | srv CPU % at sustainable | gen CPU % | "
            "generator-bound |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(fo, key=lambda r: (r["clients"], _FANOUT_ORDER.get(r["server"], 9), r["server"])):
            best = next((s for s in reversed(r["steps"]) if s["median"]["sustainable"]), None)
            gen = best["median"]["cpu_pct"]["generator"] if best else None
            out.append(
                f"| {r['server']} | {r['clients']:,} | {_c(r['sustainable_per_s'])} | {_c(r.get('throughput_per_s'))} | "
                f"{_c(r.get('throughput_p99_ms'))} | {_c(r['peak_per_s'])} | "
                f"{_c(r.get('batched', {}).get('deliveries_per_s'))} | "
                f"{_c(r['server_cpu_at_sustainable'])} | {_c(gen)} | {_c(r['generator_bound'])} |"
            )
    lim = doc["scenarios"].get("limits", {}).get("requests_per_s")
    if lim:
        out += [
            "",
            "redis-benchmark (the cache's limit, 50 connections, 100-byte values): "
            + ", ".join(f"{k.split(' ')[0]} {v:,.0f}/s" for k, v in lim.items() if "needed" not in k)
            + ".",
        ]
    notes = [f"- {name}: {n}" for name, s in doc["scenarios"].items() for n in s.get("notes", [])]
    if doc.get("failed"):
        notes += [f"- **{name} FAILED**: {why[:300]}" for name, why in doc["failed"].items()]
    if notes:
        out += ["", "Notes:", *notes]
    if pngs:
        out += ["", *[f"![{p}]({p})" for p in pngs]]
    return "\n".join(out) + "\n"
