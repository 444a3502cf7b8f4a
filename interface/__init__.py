"""interface: the HTTP/1.1 + WebSocket protocol server (h11 + wsproto) speaking ASGI 1 over a channel layer."""
