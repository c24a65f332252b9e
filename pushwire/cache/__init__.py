"""Cache backends: hot history, nonces, rate limits, sessions. See base.Cache."""
