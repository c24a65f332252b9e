"""Message bus backends: the outbox relay publishes here, every instance's router consumes."""
