"""Transports: WebSocket, long-poll and SSE, all speaking the same frames through Connections."""
