"""Placeholder: filled in by the messages work (issue 6)."""

from __future__ import annotations

from typing import Any

handlers: list[Any] = []
