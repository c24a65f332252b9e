"""Combining instances' samples into per-second lines, and the sparkline geometry."""

from __future__ import annotations

from pushwire.metrics.sampler import Sample
from pushwire.metrics.series import SPAN, sparkline, timeline

T0 = 1_800_000_000


def s(ts: float, conns: int, instance: str = "a") -> Sample:
    return Sample(ts=ts, instance=instance, connections={"app": conns})


def conns(x: Sample) -> float | None:
    return x.connections.get("app", 0)


def test_instances_are_summed_per_second_and_short_holes_carried_over() -> None:
    a = [s(T0 + i + 0.3, 10) for i in range(10)]
    b = [s(T0 + i + 0.9, 5, "b") for i in range(10) if i not in (4, 5)]  # two missed ticks
    line = timeline({"a": a, "b": b}, conns, end=T0 + 9.5, span=12)
    assert len(line) == 12
    assert line[:2] == [0.0, 0.0]  # before the first sample
    assert line[2:] == [15.0] * 10  # b's hole of two seconds is carried over


def test_an_instance_silent_for_longer_than_the_fill_counts_as_absent() -> None:
    a = [s(T0 + i, 10) for i in range(3)]
    line = timeline({"a": a}, conns, end=T0 + 9, span=10)
    assert line == [10.0, 10.0, 10.0, 10.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_max_combines_figures_every_instance_measures_alike() -> None:
    a = [s(T0 + i, 3) for i in range(5)]
    b = [s(T0 + i, 4, "b") for i in range(5)]
    assert timeline({"a": a, "b": b}, conns, span=5, combine=max) == [4.0] * 5
    assert timeline({}, conns) == [0.0] * SPAN


def test_sparkline_points_fit_the_box_and_scale_to_the_peak() -> None:
    spark = sparkline([0, 5, 10, 5], width=30, height=24)
    assert spark.current == 5 and spark.peak == 10
    pts = [tuple(map(float, p.split(","))) for p in spark.points.split()]
    assert [x for x, _ in pts] == [0.0, 10.0, 20.0, 30.0]
    assert [y for _, y in pts] == [23.0, 12.0, 1.0, 12.0]  # floor 23, top 1: the stroke stays inside
    assert sparkline([0.0] * 120, width=30).points == "0.0,23.0 30.0,23.0"  # flat runs collapse
    assert sparkline([0, 0, 0, 2, 2, 2], width=50).points == "0.0,23.0 20.0,23.0 30.0,1.0 50.0,1.0"
    assert sparkline([]).points == "" and sparkline([7]).points == "0.0,1.0"
