"""Placeholder: filled in by the traces work (issue 6)."""

from __future__ import annotations

from typing import Any

handlers: list[Any] = []
