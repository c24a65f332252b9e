"""Samples of several instances → one value per second over the last ~2 minutes, and sparklines.

Instances tick independently, so a second may hold no sample of one instance (timer jitter) or
two. Each instance's column keeps its last sample of a second and carries it forward over holes
of up to FILL seconds; an instance silent for longer counts as absent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from pushwire.metrics.sampler import Sample

SPAN = 120  # seconds shown
FILL = 2  # seconds a missing sample is carried over

Pick = Callable[[Sample], float | None]


class Spark(msgspec.Struct, frozen=True):
    """A figure with its recent history: `points` is an SVG polyline over a width x height box."""

    current: float
    peak: float
    points: str
    width: int = 120
    height: int = 24


def column(samples: Sequence[Sample], pick: Pick, end: int, span: int = SPAN) -> list[float | None]:
    start = end - span + 1
    col: list[float | None] = [None] * span
    for s in samples:
        i = int(s.ts) - start
        if 0 <= i < span:
            col[i] = pick(s)
    last, age = None, 0
    for i in range(span):
        if col[i] is not None:
            last, age = col[i], 0
        elif last is not None and age < FILL:
            col[i] = last
            age += 1
    return col


def timeline(
    by_instance: Mapping[str, Sequence[Sample]],
    pick: Pick,
    *,
    end: float | None = None,
    span: int = SPAN,
    combine: Callable[[list[float]], float] = sum,
) -> list[float]:
    """One value per second, ending at `end` (default: the newest sample); instances combined by `combine`."""
    if end is None:
        end = max((s.ts for samples in by_instance.values() for s in samples), default=0.0)
    cols = [column(samples, pick, int(end), span) for samples in by_instance.values()]
    out = []
    for i in range(span):
        present = [v for c in cols if (v := c[i]) is not None]
        out.append(float(combine(present)) if present else 0.0)
    return out


def sparkline(values: Sequence[float], width: int = 120, height: int = 24) -> Spark:
    """Polyline points scaled to the series' own peak (a flat line on the floor when all zero)."""
    peak = max(values, default=0.0)
    n = len(values)
    if n == 0:
        return Spark(0.0, 0.0, "", width, height)
    step = width / (n - 1) if n > 1 else 0.0
    top, floor = 1.0, height - 1.0  # keep the 1-unit stroke inside the box
    scale = (floor - top) / peak if peak > 0 else 0.0
    ys = [f"{floor - v * scale:.1f}" for v in values]
    # The inner points of a flat run add nothing to the line: dropped, a quiet series costs two points.
    pts = " ".join(
        f"{i * step:.1f},{y}" for i, y in enumerate(ys) if i in (0, n - 1) or not ys[i - 1] == y == ys[i + 1]
    )
    return Spark(float(values[-1]), float(peak), pts, width, height)
