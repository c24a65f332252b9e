"""Publishing (offsets, outbox, idempotency) and history: the durable half of every message."""
