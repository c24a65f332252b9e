"""Pushwire: a multi-tenant real-time push platform with durable, gap-free delivery."""

__version__ = "0.1.0"
