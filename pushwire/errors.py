"""Errors shared by every layer; the HTTP layer maps them to the spec's JSON error body."""

from __future__ import annotations

from typing import Any


class BackendUnavailable(Exception):
    """A backend (database, cache, bus, registry) did not answer in time or refused us."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend}: {detail}")
        self.backend = backend
        self.detail = detail


class SettingsError(Exception):
    """A PUSHWIRE_* setting is malformed; the CLI prints one line and exits with code 2."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting
        self.detail = detail


class ApiError(Exception):
    """A refusal with the spec's status and error code; any layer may raise it, the web layer renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
