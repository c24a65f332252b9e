"""A small parser of the Prometheus text format, strict enough to catch malformed exposition."""

from __future__ import annotations

import math
import re

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    out, pos = [], 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad labels: {text!r}"
        value = re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], m.group(2))
        out.append((m.group(1), value))
        pos = m.end()
    return tuple(out)


def parse(text: str) -> tuple[Series, dict[str, str]]:
    """(series → value, family → type). Every non-comment line must be `name{labels} value`."""
    series: Series = {}
    types: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in types, f"family {name} exposed twice"
            types[name] = kind
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        m = _LINE.match(line)
        assert m, f"malformed line: {line!r}"
        value = math.inf if m.group(4) == "+Inf" else float(m.group(4))
        key = (m.group(1), _labels(m.group(3) or ""))
        assert key not in series, f"duplicate series {key}"
        series[key] = value
    return series, types


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))), series.get((name, tuple(labels.items()))))
