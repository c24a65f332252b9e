"""App limits against the platform maxima (PUSHWIRE_MAX_<LIMIT>), and who may raise them.

Every writer (console, CLI, any API) goes through `check_limits` in the service, so a page or
command that forgets a check still cannot store 2,000,000,000 connections or a retention that
overflows the sweep. Only operators may raise a limit; a tenant admin may lower or keep it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pushwire.settings import LimitMaxima
from pushwire.tenants.errors import Invalid
from pushwire.tenants.views import AppLimits

# How each limit is named to a person (messages, CLI help, the console's labels derive from it).
LIMIT_NAMES = {
    "max_token_lifetime": "max token lifetime (s)",
    "max_connections": "max connections",
    "max_connections_per_user": "max connections per user",
    "push_rate": "push rate (messages/s)",
    "push_burst": "push burst",
    "max_payload_bytes": "max payload (bytes)",
    "hot_history_size": "hot history per channel",
    "retention_days": "history retention (days)",
}


class LimitsInvalid(Invalid):
    """One or more limits out of range; `details` names each field (the API's 422 details)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.details = [{"field": f"$.{field}", "message": message} for field, message in problems]


class LimitRaiseRefused(Invalid):
    """A tenant admin asked for more than the app has: a form error (422) naming the limits."""


def env_var(field: str) -> str:
    """The setting that holds a limit's maximum (as settings._limit_maxima names it)."""
    return "PUSHWIRE_MAX_" + field.upper().removeprefix("MAX_")


def maximum(maxima: LimitMaxima, field: str) -> int:
    return int(getattr(maxima, field))


def range_problem(field: str, value: Any, maxima: LimitMaxima) -> str | None:
    """Why `value` cannot be stored for `field` (not a whole number, below 1, above the maximum)."""
    name, top = LIMIT_NAMES[field], maximum(maxima, field)
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number"
    if not 1 <= value <= top:
        return f"{name} must be between 1 and {top} (the platform maximum, {env_var(field)})"
    return None


def parse_limit(field: str, raw: str, maxima: LimitMaxima) -> int:
    """A limit typed by a person (CLI flag, form field): a whole number within 1..maximum."""
    text = raw.strip()
    value: Any = int(text) if text.lstrip("-").isdigit() else text
    problem = range_problem(field, value, maxima)
    if problem:
        raise LimitsInvalid([(field, problem)])
    return int(value)


def check_limits(new: AppLimits, old: AppLimits | None, maxima: LimitMaxima, *, may_raise: bool) -> None:
    """Refuse limits out of range, and (unless `may_raise`) any limit above its current value.

    Only fields that change are checked against the maxima: an operator may have set a value
    before the maxima were lowered, and the app's other settings must stay editable.
    """
    changed = {
        field: value
        for field, value in msgspec.structs.asdict(new).items()
        if old is None or getattr(old, field) != value or type(value) is not int
    }
    problems = [(f, p) for f, v in changed.items() if (p := range_problem(f, v, maxima))]
    if problems:
        raise LimitsInvalid(problems)
    if not may_raise and old is not None:
        raised = [(f, v, getattr(old, f)) for f, v in changed.items() if v > getattr(old, f)]
        if raised:
            raise LimitRaiseRefused(
                "only an operator can raise a limit; "
                + "; ".join(f"{LIMIT_NAMES[f]} is {was}, not raised to {v}" for f, v, was in raised)
            )
