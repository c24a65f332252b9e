"""Relational storage: the source of truth for tenants, keys, messages, offsets, acks and routes."""
