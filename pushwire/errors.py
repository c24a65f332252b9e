"""Errors shared by every layer; the HTTP layer maps them to the spec's JSON error body."""

from __future__ import annotations


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
