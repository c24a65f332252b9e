"""PNG charts of one run (matplotlib, Agg backend) → bench/results/<stem>-<chart>.png; returns the file names."""

from __future__ import annotations

from typing import Any

from bench import harness as h

COLORS = {
    "pushwire": "tab:blue",
    "pushwire-unicast": "tab:cyan",
    "pusher": "tab:purple",
    "socketio": "tab:orange",
    "websockets": "tab:green",
    "picows": "tab:gray",
}


def draw(doc: dict[str, Any], stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []

    def save(fig: Any, what: str) -> None:
        name = f"{stem}-{what}.png"
        fig.tight_layout()
        fig.savefig(h.RESULTS_DIR / name, dpi=90)
        plt.close(fig)
        names.append(name)

    sc = doc["scenarios"]
    runs = sc.get("fanout", {}).get("runs", [])
    if runs:
        counts = sorted({r["clients"] for r in runs})
        fig, axes = plt.subplots(1, len(counts), figsize=(5 * len(counts), 4), squeeze=False)
        for ax, n in zip(axes[0], counts, strict=True):
            for r in (r for r in runs if r["clients"] == n):
                r = {**r, "steps": sorted(r["steps"], key=lambda s: s["offered"])}
                xs = [s["offered"] for s in r["steps"]]
                ys = [s["median"]["deliveries_per_s"] for s in r["steps"]]
                ax.plot(
                    xs, ys, "o-", color=COLORS.get(r["server"]), label=f"{r['server']} ({r['sustainable_per_s']:,.0f})"
                )
                bad = [(x, y) for x, y, s in zip(xs, ys, r["steps"], strict=True) if not s["median"]["sustainable"]]
                if bad:
                    ax.plot(*zip(*bad, strict=True), "x", color="red", markersize=10)
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="offered deliveries/s",
                ylabel="delivered/s (median of 3)",
                title=f"fan-out, {n:,} clients (× = not sustainable)",
            )
            ax.legend(fontsize=8)
        save(fig, "fanout")
    mem = sc.get("memory", {}).get("runs", [])
    if mem:
        fig, ax = plt.subplots(figsize=(8, 4))
        labels, vals, cols = [], [], []
        for r in mem:
            for p in r["points"]:
                labels.append(f"{r['server']}\n{p['clients']:,} {'deflate' if r['compression'] else 'plain'}")
                vals.append(p["kib_per_connection"])
                cols.append(COLORS.get(r["server"]))
        ax.bar(range(len(vals)), vals, color=cols)
        ax.set_xticks(range(len(vals)), labels, fontsize=6, rotation=90)
        ax.axhline(16, color="red", linestyle="--", label="target 16 KiB")
        ax.set(ylabel="KiB per idle connection", title="memory per idle WebSocket connection")
        ax.legend()
        save(fig, "memory")
    e2e = sc.get("e2e", {}).get("rates", [])
    if e2e:
        fig, ax = plt.subplots(figsize=(6, 4))
        keys = ["p50_ms", "p99_ms", "p999_ms", "max_ms"]
        width = 0.8 / len(e2e)
        for i, r in enumerate(e2e):
            ax.bar(
                [k + i * width for k in range(len(keys))],
                [r["median"][k] for k in keys],
                width=width,
                label=f"{r['rate']:,} pushes/s",
            )
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], ["p50", "p99", "p99.9", "max"])
        ax.axhline(20, color="red", linestyle="--", label="target p99 20 ms (1,000/s)")
        ax.axhline(5, color="orange", linestyle=":", label="target idle p50 5 ms")
        ax.set(yscale="log", ylabel="ms (receipt − intended send)", title="end-to-end latency, durable path")
        ax.legend()
        save(fig, "e2e")
    rec = sc.get("recovery", {}).get("replay", [])
    if rec:
        fig, ax = plt.subplots(figsize=(6, 4))
        for src, off in (("redis", 0.0), ("database", 0.4)):
            rs = [r for r in rec if r["source"] == src]
            ax.bar([i + off for i in range(len(rs))], [r["median_ms"] or 0 for r in rs], width=0.4, label=f"from {src}")
            ax.set_xticks([i + 0.2 for i in range(len(rs))], [f"K={r['k']:,}" for r in rs])
        ax.set(yscale="log", ylabel="ms to the K-th replayed message", title="replay on reconnect")
        ax.legend()
        save(fig, "recovery")
    return names
