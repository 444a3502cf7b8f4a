"""Pure translation between protocol events and ASGI 1 message dicts (asgi1.md §7–8).

No state, no I/O: every function takes values and returns a dict or a small frozen
record. The connection cores call these; tests call them with literal values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import unquote, unquote_to_bytes

from shmlayer.contract import random_suffix

from ._options import Options

__all__ = [
    "BadRequest",
    "ReplyError",
    "RequestScope",
    "ResponseChunk",
    "ResponseStart",
    "WebSocketReply",
    "body_chunk",
    "body_closed",
    "clean_headers",
    "http_disconnect",
    "http_request",
    "new_body_channel",
    "parse_http_reply",
    "parse_websocket_reply",
    "request_scope",
    "valid_close_code",
    "websocket_connect",
    "websocket_disconnect",
    "websocket_receive",
]

Headers = Sequence[tuple[bytes, bytes]]


class BadRequest(ValueError):
    """The request cannot be turned into an ASGI message (e.g. a path that is not UTF-8)."""


class ReplyError(ValueError):
    """The application sent a reply message that breaks asgi1.md §7–8; it is logged and ignored."""


@dataclass(frozen=True, slots=True)
class RequestScope:
    """What every request/connect message carries, resolved once per request.

    Attributes:
        path: percent-decoded, UTF-8-decoded path.
        query_string: raw query string.
        root_path: ASGI root_path.
        scheme: "http"/"https" (or "ws"/"wss" for WebSockets).
        headers: lower-cased names, order and duplicates kept, ``_`` names dropped.
        client: the peer (or the proxied client).
        server: the listening address.
    """

    path: str
    query_string: bytes
    root_path: str
    scheme: str
    headers: list[list[bytes]]
    client: list[Any] | None
    server: list[Any] | None


def clean_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[list[bytes]]:
    """Lower-case header names and drop names containing ``_``.

    Headers with ``_`` are dropped because WSGI maps ``-`` and ``_`` to the same
    ``HTTP_*`` key, which let a client spoof a proxy's header (CVE-2015-0219, as daphne).
    """
    return [[bytes(name).lower(), bytes(value)] for name, value in headers if b"_" not in name]


def _split_target(target: bytes) -> tuple[str, bytes]:
    raw_path, _, query = target.partition(b"?")
    if raw_path.startswith(b"http://") or raw_path.startswith(b"https://"):
        # Absolute-form request target (RFC 7230 §5.3.2): keep only the path.
        after_host = raw_path.split(b"/", 3)
        raw_path = b"/" + (after_host[3] if len(after_host) > 3 else b"")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request path is not valid UTF-8 after percent-decoding") from None
    return path, query


def _ip_trusted(host: str, allowed: Sequence[str]) -> bool:
    if "*" in allowed:
        return True
    if host in allowed:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in allowed:
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def request_scope(
    target: bytes,
    headers: Headers,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
    options: Options,
    websocket: bool = False,
) -> RequestScope:
    """Resolve path, scheme, client and root_path of one request.

    Proxy headers (operations.md §4.1) are read only when ``options.proxy_headers`` is on
    and the peer is in ``options.forwarded_allow_ips``. X-Forwarded-For is read from the
    right, skipping trusted proxies, so a client cannot claim an address by sending its
    own header through the proxy.

    Args:
        target: the raw request target.
        headers: request headers as received.
        client: the TCP peer, or None.
        server: the listening address, or None.
        options: server options.
        websocket: True for ``websocket.connect`` (scheme ws/wss).

    Raises:
        BadRequest: the path is not UTF-8.
    """
    path, query = _split_target(target)
    scheme = "http"
    root_path = options.root_path
    peer: list[Any] | None = [client[0], client[1]] if client else None
    if options.proxy_headers and client is not None and _ip_trusted(client[0], options.forwarded_allow_ips):
        forwarded_for = _header(headers, b"x-forwarded-for")
        if forwarded_for:
            hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
            chosen = hops[0] if hops else None
            for hop in reversed(hops):
                if not _ip_trusted(hop, options.forwarded_allow_ips):
                    chosen = hop
                    break
            if chosen:
                port_header = _header(headers, b"x-forwarded-port")
                port = int(port_header) if port_header and port_header.isdigit() else 0
                peer = [chosen, port]
        proto = _header(headers, b"x-forwarded-proto")
        if proto and proto.strip().lower() in (b"http", b"https", b"ws", b"wss"):
            scheme = "https" if proto.strip().lower() in (b"https", b"wss") else "http"
        override = _header(headers, b"daphne-root-path")
        if override is not None:
            root_path = unquote(override.decode("latin-1"))
    if websocket:
        scheme = "wss" if scheme == "https" else "ws"
    kept = [pair for pair in clean_headers(headers) if pair[0] != b"daphne-root-path"]
    return RequestScope(
        path=path,
        query_string=query,
        root_path=root_path,
        scheme=scheme,
        headers=kept,
        client=peer,
        server=[server[0], server[1]] if server else None,
    )


def new_body_channel() -> str:
    """A fresh single-reader ``http.request.body?…`` name for one upload."""
    return "http.request.body?" + random_suffix()


def http_request(
    scope: RequestScope,
    reply_channel: str,
    http_version: str,
    method: str,
    body: bytes,
    body_channel: str | None,
) -> dict[str, Any]:
    """The ``http.request`` message (asgi1.md §7)."""
    return {
        "reply_channel": reply_channel,
        "http_version": http_version,
        "method": method,
        "scheme": scheme_or_default(scope.scheme, "http"),
        "path": scope.path,
        "query_string": scope.query_string,
        "root_path": scope.root_path,
        "headers": scope.headers,
        "body": body,
        "body_channel": body_channel,
        "client": scope.client,
        "server": scope.server,
    }


def scheme_or_default(scheme: str, default: str) -> str:
    """``scheme`` unless empty (the spec forbids an empty scheme)."""
    return scheme or default


def body_chunk(content: bytes, more_content: bool) -> dict[str, Any]:
    """A Request Body Chunk on ``body_channel``."""
    return {"content": content, "closed": False, "more_content": more_content}


def body_closed() -> dict[str, Any]:
    """The chunk telling the application the client left mid-upload."""
    return {"content": b"", "closed": True, "more_content": False}


def http_disconnect(reply_channel: str, path: str) -> dict[str, Any]:
    """``http.disconnect``: the client left before the response ended."""
    return {"reply_channel": reply_channel, "path": path}


def websocket_connect(scope: RequestScope, reply_channel: str) -> dict[str, Any]:
    """``websocket.connect`` (order 0), with scheme and root_path (daphne omitted both)."""
    return {
        "reply_channel": reply_channel,
        "scheme": scheme_or_default(scope.scheme, "ws"),
        "path": scope.path,
        "query_string": scope.query_string,
        "root_path": scope.root_path,
        "headers": scope.headers,
        "client": scope.client,
        "server": scope.server,
        "order": 0,
    }


def websocket_receive(reply_channel: str, path: str, order: int, data: str | bytes) -> dict[str, Any]:
    """``websocket.receive``: exactly one of ``text``/``bytes`` is non-None, even when empty."""
    is_text = isinstance(data, str)
    return {
        "reply_channel": reply_channel,
        "path": path,
        "order": order,
        "text": data if is_text else None,
        "bytes": None if is_text else bytes(data),  # type: ignore[arg-type]  # is_text narrows
    }


def websocket_disconnect(reply_channel: str, path: str, code: int, order: int) -> dict[str, Any]:
    """``websocket.disconnect`` with the close code (1006 for an abnormal drop)."""
    return {"reply_channel": reply_channel, "path": path, "code": code, "order": order}


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """The first reply to an ``http.request``."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes
    more_content: bool


@dataclass(frozen=True, slots=True)
class ResponseChunk:
    """A later reply: more body."""

    content: bytes
    more_content: bool


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        # Lenient: some applications put str header names/values; HTTP headers are latin-1.
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise ReplyError(f"{what} {value!r} is not latin-1") from None
    raise ReplyError(f"{what} must be bytes, not {type(value).__name__}")


def parse_http_reply(message: Mapping[str, Any], started: bool) -> ResponseStart | ResponseChunk:
    """Check one reply on an HTTP reply channel (asgi1.md §7).

    Args:
        message: the reply.
        started: whether a Response (with ``status``) was already received.

    Raises:
        ReplyError: a first message without ``status``, a second with one, or bad types.
    """
    content = message.get("content", b"")
    if not isinstance(content, (bytes, bytearray)):
        raise ReplyError(f"'content' must be bytes, not {type(content).__name__}")
    content = bytes(content)
    more = bool(message.get("more_content", False))
    if "status" in message:
        if started:
            raise ReplyError("got a second Response message (with 'status') for one request")
        status = message["status"]
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
            raise ReplyError(f"response status must be an int 100-999, not {status!r}")
        headers = []
        for pair in message.get("headers") or []:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ReplyError(f"response header {pair!r} is not a [name, value] pair")
            headers.append((_as_bytes(pair[0], "header name"), _as_bytes(pair[1], "header value")))
        return ResponseStart(status, headers, content, more)
    if not started:
        if "request" in message:
            raise ReplyError("server push is not supported over HTTP/1.1; ignored")
        raise ReplyError("the first reply message has no 'status'")
    return ResponseChunk(content, more)


_WS_REPLY_KEYS = frozenset(("bytes", "text", "close", "accept"))


@dataclass(frozen=True, slots=True)
class WebSocketReply:
    """One reply on a WebSocket reply channel, checked.

    Attributes:
        accept: True/False when given, None when absent.
        data: text or bytes to send, or None.
        close: close code to send after the data, or None.
    """

    accept: bool | None
    data: str | bytes | None
    close: int | None


def valid_close_code(code: int) -> bool:
    """Whether an application may close with ``code`` (RFC 6455 §7.4: 1000–1014 minus the
    reserved 1004/1005/1006, and 3000–4999)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def parse_websocket_reply(message: Mapping[str, Any]) -> WebSocketReply:
    """Check one Send/Close/Accept message (asgi1.md §8).

    Raises:
        ReplyError: both text and bytes, wrong types, unknown keys, or an invalid close code.
    """
    unknown = set(message) - _WS_REPLY_KEYS
    if unknown:
        raise ReplyError(f"unknown keys {sorted(unknown)!r} in a WebSocket reply")
    text, data = message.get("text"), message.get("bytes")
    if text is not None and data is not None:
        raise ReplyError("a WebSocket reply has both 'text' and 'bytes'")
    if text is not None and not isinstance(text, str):
        raise ReplyError(f"'text' must be str, not {type(text).__name__}")
    if data is not None and not isinstance(data, (bytes, bytearray)):
        raise ReplyError(f"'bytes' must be bytes, not {type(data).__name__}")
    close_value = message.get("close", False)
    close: int | None
    if close_value is True:
        close = 1000
    elif close_value is False or close_value is None:
        close = None
    elif isinstance(close_value, int) and not isinstance(close_value, bool):
        if not valid_close_code(close_value):
            raise ReplyError(f"invalid WebSocket close code {close_value!r}")
        close = close_value
    else:
        raise ReplyError(f"'close' must be a bool or an int code, not {close_value!r}")
    accept = message.get("accept")
    payload = text if text is not None else (bytes(data) if data is not None else None)
    return WebSocketReply(accept=None if accept is None else bool(accept), data=payload, close=close)
