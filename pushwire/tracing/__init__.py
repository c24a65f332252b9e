"""OpenTelemetry tracing of every message: per-Runtime provider, shared span store, console views."""
