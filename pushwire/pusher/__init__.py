"""The Pusher Channels protocol (WebSocket `/app/{key}`, HTTP `/apps/{app_id}/...`) over the platform's channels."""
