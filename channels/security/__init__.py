"""Security helpers for consumers (origin checks of WebSocket handshakes)."""
