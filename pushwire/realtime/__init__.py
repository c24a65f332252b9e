"""Client delivery: the Hub of local connections, recovery, and the WebSocket, long-poll and SSE transports."""
