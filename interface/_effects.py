"""What a sans-I/O connection core asks its transport to do, besides writing bytes.

A core (``_http.HTTPConnection``, ``_ws.WebSocketConnection``) never touches a socket,
a clock it was not given, or the channel layer. It appends effects to its outbox; the
transport (``server.py``) carries them out in order and reports back what failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Sequence

import h11

__all__ = ["AccessRecord", "CancelSends", "ConnInfo", "LayerSend", "OnFull", "Refusal", "Upgrade"]


class OnFull(Enum):
    """What the transport does when the layer raises ``ChannelFull`` (asgi1.md §5)."""

    #: Give up at once and call ``core.send_refused(send)`` (503 / reject).
    REFUSE = "refuse"
    #: Hold this and every later send of the connection, retry until ``retry_for``
    #: seconds passed, then call ``core.send_refused(send)``.
    RETRY = "retry"
    #: Drop the message, for any refusal (disconnect notifications): logged at debug.
    DROP = "drop"


class Refusal(Enum):
    """Why the transport could not send a message (``core.send_refused``)."""

    #: ChannelFull after the OnFull policy, or a layer that cannot be reached: the
    #: client is told to come back later (503, close 1013).
    FULL = "full"
    #: MessageTooLarge: huge request headers (431), a WebSocket message over the layer's
    #: limit (close 1009), a body chunk the layer cannot hold (500).
    TOO_LARGE = "too large"
    #: Anything else, a bug or a message the layer cannot encode: logged with its
    #: traceback; the client gets an internal error (500, close 1011).
    FAILED = "failed"


class LayerSend(NamedTuple):
    """Send ``message`` on ``channel``.

    A named tuple, not a frozen dataclass: one is made for every message a client
    sends, and a frozen dataclass's ``__init__`` costs twice as much.

    Attributes:
        channel: full channel name.
        message: the ASGI 1 message dict.
        on_full: the ChannelFull policy.
        retry_for: seconds to keep retrying under ``OnFull.RETRY``.
    """

    channel: str
    message: dict[str, Any]
    on_full: OnFull
    retry_for: float = 0.0


@dataclass(frozen=True, slots=True)
class CancelSends:
    """Forget every send to ``channel`` still waiting for room: nobody will read it.

    Attributes:
        channel: full channel name (a request's body channel once its response started).
    """

    channel: str


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One access-log line (daphne's format; written by the transport).

    Attributes:
        client: peer address (``(host, port)`` or the scope's ``[host, port]``), or None.
        request: ``"GET /path"`` or ``"WSCONNECT /path"``.
        status: HTTP status, or None for WebSocket events.
        length: response body bytes, or None.
    """

    client: Sequence[Any] | None
    request: str
    status: int | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The HTTP core saw a WebSocket upgrade request: hand the socket to a WebSocket core.

    Attributes:
        request: the h11 request (method, target, headers).
        trailing: bytes received after the request head (early frames).
    """

    request: h11.Request
    trailing: bytes


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """Where one TCP connection comes from and goes to.

    Attributes:
        client: ``(host, port)`` of the peer, or None (unix sockets).
        server: ``(host, port)`` of the listening socket, or None.
        scheme: "http" (TLS is the proxy's job; a trusted X-Forwarded-Proto may change it).
        reply_prefix: process channel plus this connection's id, e.g. ``interface.AbC!7``.
    """

    client: tuple[str, int] | None
    server: tuple[str, int] | None
    reply_prefix: str
    scheme: str = "http"
