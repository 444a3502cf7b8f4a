"""The interface server's settings: one frozen dataclass, independent of where it binds.

Names follow daphne's CLI and gunicorn's settings where the meaning matches
(``operations.md`` §4.1): ``http_timeout``, ``ping_interval``, ``limit_request_line``…
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Options", "BODY_CHUNK_SIZE"]

#: Request bodies are forwarded in chunks of this size: the first rides in
#: ``http.request["body"]``, the rest go through ``body_channel`` (Channels' own chunk size).
BODY_CHUNK_SIZE = 512 * 1024


@dataclass(frozen=True)
class Options:
    """Settings of one interface server process.

    Attributes:
        http_timeout: seconds from a complete request until the response must have
            started; then 503 (daphne ``--http-timeout``).
        http_idle_timeout: seconds a request body may pause mid-upload (then 408), and a
            started response may stay silent between chunks (then the connection is cut).
        header_timeout: seconds a client has to send a complete request head once it
            started one (slowloris defence); then 408 and close.
        websocket_timeout: maximum WebSocket lifetime in seconds, then close 1000;
            None = the layer's ``group_expiry``; -1 = no limit.
        websocket_connect_timeout: seconds the application has to answer
            ``websocket.connect``; then 403.
        websocket_close_timeout: seconds to wait for the peer's close frame after ours.
        ping_interval: idle seconds before the server pings a WebSocket peer.
        ping_timeout: seconds without any frame from the peer after a ping; then the
            socket is dropped (disconnect code 1006).
        keepalive: seconds an idle keep-alive HTTP connection is kept open.
        proxy_headers: trust X-Forwarded-For/-Proto/-Port from ``forwarded_allow_ips``.
        forwarded_allow_ips: peer addresses trusted for proxy headers ("*" = all).
        root_path: ASGI ``root_path`` (WSGI SCRIPT_NAME) for every request.
        access_log: path, "-" for stdout, or None for no access log.
        graceful_timeout: seconds in-flight HTTP requests get after SIGTERM.
        max_connections: open connections per process; accepting pauses above it.
        limit_request_line: longest request line in bytes (longer: 400).
        limit_request_fields: most header fields (more: 431).
        limit_request_field_size: longest header field, name and value (longer: 431).
        max_body_size: largest request body in bytes (larger: 413); None = no limit.
        ws_protocols: subprotocols this server accepts; the first one the client offers
            that is listed here is selected.
        websocket_max_message_size: largest WebSocket message forwarded (larger: 1009).
        server_name: value of the ``Server`` response header ("" to send none).
    """

    http_timeout: float = 120
    http_idle_timeout: float = 60
    header_timeout: float = 10
    websocket_timeout: float | None = None
    websocket_connect_timeout: float = 5
    websocket_close_timeout: float = 5
    ping_interval: float = 20
    ping_timeout: float = 30
    keepalive: float = 5
    proxy_headers: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    root_path: str = ""
    access_log: str | None = None
    graceful_timeout: float = 30
    max_connections: int = 10000
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    max_body_size: int | None = None
    ws_protocols: tuple[str, ...] = ()
    websocket_max_message_size: int = 1024 * 1024 - 4096
    server_name: str = "shmchannels"

    def __post_init__(self) -> None:
        for field in ("http_timeout", "http_idle_timeout", "header_timeout", "websocket_connect_timeout",
                      "websocket_close_timeout", "ping_interval", "ping_timeout", "keepalive", "graceful_timeout"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Options.{field} must be a positive number of seconds, not {value!r}")
        for field in ("max_connections", "limit_request_line", "limit_request_fields",
                      "limit_request_field_size", "websocket_max_message_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Options.{field} must be a positive int, not {value!r}")
        if self.max_body_size is not None and (not isinstance(self.max_body_size, int) or self.max_body_size < 0):
            raise ValueError(f"Options.max_body_size must be None or an int >= 0, not {self.max_body_size!r}")
        if self.websocket_timeout is not None and self.websocket_timeout != -1 and self.websocket_timeout <= 0:
            raise ValueError(f"Options.websocket_timeout must be None, -1 or positive, not {self.websocket_timeout!r}")
        # Tuples keep the dataclass hashable and immutable even if a list was passed.
        object.__setattr__(self, "forwarded_allow_ips", tuple(self.forwarded_allow_ips))
        object.__setattr__(self, "ws_protocols", tuple(self.ws_protocols))

    def replace(self, **changes: object) -> Options:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def websocket_lifetime(self, group_expiry: float) -> float | None:
        """Maximum WebSocket lifetime in seconds, or None for no limit.

        Args:
            group_expiry: the layer's ``group_expiry``, the default (asgi1.md §6).
        """
        if self.websocket_timeout is None:
            return float(group_expiry)
        if self.websocket_timeout == -1:
            return None
        return float(self.websocket_timeout)
