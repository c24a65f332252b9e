"""Refusals of the tenancy layer; the web layer renders them (404 / 422), the CLI prints one line."""

from __future__ import annotations


class NotFound(Exception):
    """The object does not exist *in the caller's scope* (never says which)."""


class Invalid(ValueError):
    """Input that breaks a rule; the message is for a person."""
