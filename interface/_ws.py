"""Sans-I/O WebSocket connection: frames in → ASGI 1 messages out, replies in → frames out.

A :class:`WebSocketConnection` takes over a socket whose HTTP core saw an upgrade
request. It sends ``websocket.connect`` (order 0) and holds the handshake until the
application answers (asgi1.md §8 reply table); frames that arrive before that are
buffered, never forwarded early. Once open, each complete message (fragments
assembled, empty ones included) becomes one ``websocket.receive`` with the next
``order``; the end of the connection, whoever ends it, becomes one
``websocket.disconnect`` with ``order`` = last + 1 and the close code (1006 when the
socket just dropped). Ping/pong keepalive and the connection lifetime stay in here.

Frames: the core finds the frame boundaries itself. A whole, masked, unfragmented
text or binary frame of up to 64 KiB (nearly every frame) is decoded here with the
helpers of ``_frames.py``; every other frame goes to wsproto whole and in order, so
wsproto's errors and close handling stay the only ones. Outgoing messages are built
here too, as single frames. Compression always goes through the one
permessage-deflate object wsproto negotiated (``_frames.Deflate``).

Lifecycle (RFC 6455 §4 and §7), applied by ``_lifecycle.Lifecycle``::

    HANDSHAKE --accept--> OPEN --close (ours)--> CLOSING --remote_close/drop--> CLOSED
        |                   \\--remote_close/drop-------------------------------^
        \\--reject/drop----------------------------------------------------------^
"""

from __future__ import annotations

import logging
import time
from enum import Enum
from typing import Any, Callable, Mapping

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from . import _asgi1
from ._frames import FAST_MAX, OP_BINARY, OP_TEXT, Deflate, encode_frame, parse_head, unmask
from ._effects import AccessRecord, ConnInfo, LayerSend, OnFull, Refusal
from ._lifecycle import ConnectionCore
from ._options import Options

__all__ = ["WSState", "WebSocketConnection"]

log = logging.getLogger("interface.websocket")

#: Bytes of early frames held during the handshake before reading pauses.
MAX_HELD = 64 * 1024
#: Seconds a ``websocket.receive`` may wait for room in the layer before close 1013.
RECEIVE_RETRY_FOR = 1.0


class WSState(Enum):
    """Where one WebSocket connection is (RFC 6455 §4 opening, §7 closing)."""

    #: ``websocket.connect`` sent; the 101 is held until the application answers.
    HANDSHAKE = 0
    #: Handshake complete; messages flow both ways.
    OPEN = 1
    #: We sent a close frame and wait for the peer's.
    CLOSING = 2
    #: Finished; the transport closes the socket after writing what is queued.
    CLOSED = 3


_S = WSState
TRANSITIONS: dict[tuple[WSState, str], WSState] = {
    (_S.HANDSHAKE, "accept"): _S.OPEN,
    (_S.HANDSHAKE, "reject"): _S.CLOSED,
    (_S.HANDSHAKE, "drop"): _S.CLOSED,
    (_S.OPEN, "close"): _S.CLOSING,
    (_S.OPEN, "remote_close"): _S.CLOSED,
    (_S.OPEN, "drop"): _S.CLOSED,
    (_S.CLOSING, "remote_close"): _S.CLOSED,
    (_S.CLOSING, "drop"): _S.CLOSED,
}


class WebSocketConnection(ConnectionCore[WSState]):
    """One WebSocket connection's protocol state.

    Args:
        info: addresses and the reply-channel prefix; the reply channel is the prefix.
        options: server options (timeouts, subprotocols, message size limit).
        request: the upgrade request the HTTP core parsed.
        trailing: bytes that followed the request head.
        lifetime: maximum connection lifetime in seconds, or None.
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, info: ConnInfo, options: Options, request: h11.Request, trailing: bytes = b"",
                 lifetime: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.info = info
        self.options = options
        self.reply_channel = info.reply_prefix
        super().__init__(TRANSITIONS, WSState.HANDSHAKE, WSState.CLOSED)
        self._clock = clock
        self._held = bytearray(trailing)
        self._parts: list[Any] = []
        self._part_size = 0
        self._order = 0
        self._muted = False
        self._notified = False
        now = clock()
        self._started = now
        self._lifetime = lifetime
        self._last_rx = now
        self._ping_sent: float | None = None
        self._closing_since = 0.0
        self._deadline = now + options.websocket_connect_timeout
        self._ws = WSConnection(ConnectionType.SERVER)
        self._deflate = Deflate()
        # What wsproto inflates per chunk stays bounded too (a text may take 4 bytes a character).
        self._deflate.inbound_limit = options.websocket_max_message_size * 4
        self._deflate_on = False
        # Frame boundaries, tracked here for the fast path (see _frames.py): unparsed
        # bytes, bytes of the current frame still owed to wsproto, and whether wsproto
        # is in the middle of a fragmented message.
        self._rx = bytearray()
        self._passthru = 0
        self._frag_open = False
        self._offered: list[str] = []
        self.path = request.target.decode("latin-1")
        try:
            scope = _asgi1.request_scope(request.target, list(request.headers), info.client, info.server,
                                         options, websocket=True)
        except _asgi1.BadRequest:
            scope = None
        self._client = scope.client if scope else None
        try:
            if scope is None:
                raise RemoteProtocolError("path is not UTF-8", event_hint=RejectConnection(status_code=400))
            self._ws.initiate_upgrade_connection(list(request.headers), request.target)
            for event in self._ws.events():
                if isinstance(event, Request):
                    self._offered = list(event.subprotocols)
        except RemoteProtocolError as exc:
            hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else RejectConnection(status_code=400)
            log.info("bad WebSocket handshake from %s: %s", info.client, exc)
            self._write_reject(hint)
            self._life.fire("drop")
            self._deadline = None
            return
        self.path = scope.path
        self._access("WSCONNECTING")
        self._effects.append(LayerSend("websocket.connect", _asgi1.websocket_connect(scope, self.reply_channel),
                                       OnFull.REFUSE))

    # -- what the transport reads ------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        """False while reading should pause (handshake pending with a full buffer, or closed)."""
        state = self._life.state
        if state is WSState.HANDSHAKE:
            return len(self._held) < MAX_HELD
        return state is not WSState.CLOSED

    @property
    def busy(self) -> bool:
        """WebSockets never block a graceful stop; :meth:`shutdown` closes them."""
        return False

    # -- inputs ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed its side."""
        state = self._life.state
        if state is WSState.CLOSED:
            return
        if not data:
            self._drop(1006)
            return
        if state is WSState.HANDSHAKE:
            self._held += data
            return
        self._last_rx = self._clock()
        self._ping_sent = None
        self._feed(data)

    def connection_lost(self) -> None:
        """The socket broke: the peer is gone without a close frame (code 1006)."""
        self._drop(1006)

    def handle_reply(self, local: str, message: Mapping[str, Any]) -> None:
        """Apply one Send/Close/Accept message (asgi1.md §8 reply table)."""
        state = self._life.state
        if state is WSState.OPEN and len(message) == 1:
            # The common reply, {"text": str} or {"bytes": bytes}: nothing else to check.
            text = message.get("text")
            if text.__class__ is str:
                self._send_message(text)
                return
            data = message.get("bytes")
            if data.__class__ is bytes:
                self._send_message(data)
                return
        elif state is WSState.CLOSED or state is WSState.CLOSING:
            log.debug("dropping reply for closed WebSocket %s", self.reply_channel)
            return
        try:
            reply = _asgi1.parse_websocket_reply(message)
        except _asgi1.ReplyError as exc:
            log.error("bad reply on %s (%s): %s", self.reply_channel, self.path, exc)
            return
        if state is WSState.HANDSHAKE:
            has_data = bool(reply.data)
            if reply.accept is True or (reply.accept is None and has_data):
                self._accept()
            elif reply.accept is False or reply.close is not None:
                self._reject(403)
                return
            else:
                log.debug("reply without accept/data/close during the handshake of %s ignored", self.reply_channel)
                return
        if reply.data is not None:
            self._send_message(reply.data)
        if reply.close is not None and self._life.state is WSState.OPEN:
            self._local_close(reply.close, notify=True)

    def send_refused(self, send: LayerSend, refusal: Refusal = Refusal.FULL) -> None:
        """The layer refused ``send``: reject the handshake or close the socket.

        A refused ``websocket.connect`` answers 503 (FULL), 431 (TOO_LARGE: only its
        headers can make it that big) or 500 (FAILED); a refused ``websocket.receive``
        closes 1013 without a disconnect (FULL, asgi1.md §5), or 1009 / 1011 with one.
        """
        if send.channel == "websocket.connect":
            if self._life.state is WSState.HANDSHAKE:
                status = {Refusal.FULL: 503, Refusal.TOO_LARGE: 431}.get(refusal, 500)
                log.warning("websocket.connect for %s refused (%s): %d", self.path, refusal.value, status)
                self._write_reject(RejectConnection(status_code=status))
                self._access("WSREJECT")
                self._notified = True  # the connect never reached anyone: no disconnect
                self._life.fire("reject")
                self._deadline = None
        elif send.channel == "websocket.receive" and self._life.state is WSState.OPEN:
            if refusal is Refusal.TOO_LARGE:
                self._local_close(1009, notify=True)
            elif refusal is Refusal.FAILED:
                self._local_close(1011, notify=True)
            else:
                # asgi1.md §5: close 1013 and stop forwarding; a muted socket gets no disconnect.
                log.warning("websocket.receive full for %s: closing 1013", self.reply_channel)
                self._muted = True
                self._local_close(1013, notify=False)

    def tick(self) -> None:
        """Apply whichever timer has passed: connect timeout, ping, lifetime, close wait."""
        now = self._clock()
        if self._deadline is None or now < self._deadline:
            return
        state = self._life.state
        if state is WSState.HANDSHAKE:
            log.info("no answer to websocket.connect for %s within %ss: 403", self.path,
                     self.options.websocket_connect_timeout)
            self._reject(403)
        elif state is WSState.OPEN:
            if self._lifetime is not None and now >= self._started + self._lifetime:
                self._local_close(1000, notify=True)
            elif self._ping_sent is not None and now >= self._ping_sent + self.options.ping_timeout:
                log.info("WebSocket %s did not answer a ping: dropping", self.reply_channel)
                self._drop(1006)
            elif self._ping_sent is None and now >= self._last_rx + self.options.ping_interval:
                self._ping_sent = now
                self._write(Ping(payload=b"keepalive"))
            self._set_open_deadline()
        elif state is WSState.CLOSING:
            self._drop(1006, notify=False)

    def shutdown(self, code: int = 1001) -> None:
        """Server going away (1001) or layer lost (1012): close now, tell the application."""
        state = self._life.state
        if state is WSState.HANDSHAKE:
            self._reject(503)
        elif state is WSState.OPEN:
            self._local_close(code, notify=True)

    def abort(self, code: int = 1012) -> None:
        """Stop now: for a WebSocket the same as :meth:`shutdown` (close ``code`` at once)."""
        self.shutdown(code)

    # -- internals ---------------------------------------------------------------------------

    def _feed(self, data: bytes | bytearray) -> None:
        """Split incoming bytes into frames: common ones here, the rest through wsproto."""
        rx = self._rx
        if rx:
            rx += data
            buf: bytes | bytearray = rx
        else:
            buf = data
        pos = 0
        end = len(buf)
        life = self._life
        while pos < end:
            state = life.state
            if state is WSState.CLOSED:
                rx.clear()
                return
            if self._passthru:
                take = min(self._passthru, end - pos)
                self._passthru -= take
                self._ws.receive_data(bytes(buf[pos:pos + take]))
                pos += take
                self._process()
                continue
            head = parse_head(buf, pos)
            if head is None:
                break
            first = head.first
            opcode = first & 0x0F
            rsv = first & 0x70
            if (first & 0x80 and (opcode == OP_TEXT or opcode == OP_BINARY) and state is WSState.OPEN
                    and not self._frag_open and head.masked and head.minimal and head.length <= FAST_MAX
                    and (not rsv or (rsv == 0x40 and self._deflate_on))
                    and self._ws.state is ConnectionState.OPEN):
                total = head.size + head.length
                if end - pos < total:
                    break  # wait for the whole frame
                self._fast_message(buf, pos, head.size, head.length, opcode, bool(rsv))
                pos += total
                continue
            # Any other frame goes to wsproto whole, from its first byte, as it arrives.
            if opcode <= OP_BINARY:
                self._frag_open = not first & 0x80
            self._passthru = head.size + head.length
        if life.state is WSState.CLOSED:
            rx.clear()
        elif buf is rx:
            del rx[:pos]
        elif pos < end:
            rx += buf[pos:]

    def _fast_message(self, buf: bytes | bytearray, pos: int, size: int, length: int, opcode: int,
                      compressed: bool) -> None:
        """One whole masked text/binary frame: unmask, inflate, decode, forward."""
        start = pos + size
        payload = unmask(buf[start:start + length], buf[start - 4:start])
        limit = self.options.websocket_max_message_size
        if compressed:
            # A text of ``limit`` characters may take 4 bytes per character.
            bound = limit * 4 if opcode == OP_TEXT else limit
            inflated = self._deflate.inflate_message(payload, bound)
            if inflated is None:
                self._on_close(CloseConnection(code=CloseReason.INVALID_FRAME_PAYLOAD_DATA,
                                               reason="invalid compressed data"))
                return
            if len(inflated) > bound:
                self._local_close(1009, notify=True)
                return
            payload = inflated
        data: str | bytes
        if opcode == OP_TEXT:
            try:
                data = payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._on_close(CloseConnection(code=CloseReason.INVALID_FRAME_PAYLOAD_DATA, reason=str(exc)))
                return
        else:
            data = payload
        if len(data) > limit:
            self._local_close(1009, notify=True)
            return
        self._forward(data)

    def _process(self) -> None:
        for event in self._ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self._life.state is not WSState.OPEN:
                    continue
                self._parts.append(event.data)  # type: ignore[attr-defined]
                self._part_size += len(event.data)  # type: ignore[attr-defined]
                if self._part_size > self.options.websocket_max_message_size:
                    self._local_close(1009, notify=True)
                    self._parts.clear()
                    continue
                if event.message_finished:  # type: ignore[attr-defined]
                    if kind is TextMessage:
                        data: str | bytes = "".join(self._parts)
                    else:
                        data = b"".join(self._parts)
                    self._parts = []
                    self._part_size = 0
                    self._forward(data)
            elif kind is Ping:
                if self._ws.state is ConnectionState.OPEN:
                    self._write(event.response())  # type: ignore[attr-defined]
            elif kind is Pong:
                pass
            elif kind is CloseConnection:
                self._on_close(event)  # type: ignore[arg-type]
                return

    def _on_close(self, event: CloseConnection) -> None:
        ws_state = self._ws.state
        if ws_state is ConnectionState.REMOTE_CLOSING:
            # The peer closed: answer with the same code (RFC 6455 §5.5.1), then we are done.
            self._write(event.response())
            self._finish_close(event.code)
        elif ws_state is ConnectionState.CLOSED:
            # Our close was answered.
            self._finish_close(event.code)
        else:
            # wsproto reports a protocol violation (1002) or bad UTF-8 (1007) this way:
            # fail the connection with that code and stop reading.
            log.info("WebSocket %s protocol error: %s", self.reply_channel, event.reason)
            if self._ws.state is ConnectionState.OPEN:
                self._write(CloseConnection(code=event.code))
            self._drop(event.code)  # logs WSDISCONNECT only if our own close has not

    def _finish_close(self, code: int) -> None:
        self._notify(code)
        if self._life.state is WSState.OPEN:
            self._access("WSDISCONNECT")
        self._life.fire("remote_close")
        self._deadline = None

    def _forward(self, data: str | bytes) -> None:
        if self._muted:
            return
        self._order += 1
        message = _asgi1.websocket_receive(self.reply_channel, self.path, self._order, data)
        self._effects.append(LayerSend("websocket.receive", message, OnFull.RETRY, RECEIVE_RETRY_FOR))

    def _accept(self) -> None:
        subprotocol = next((p for p in self._offered if p in self.options.ws_protocols), None)
        try:
            self._out += self._ws.send(AcceptConnection(subprotocol=subprotocol, extensions=[self._deflate]))
        except Exception as exc:  # wsproto LocalProtocolError: a bug, but never hang the client
            log.error("cannot accept WebSocket %s: %s", self.reply_channel, exc)
            self._drop(1006)
            return
        self._life.fire("accept")
        self._deflate_on = self._deflate.enabled()
        self._access("WSCONNECT")
        self._last_rx = self._clock()
        self._set_open_deadline()
        if self._held:
            held = bytes(self._held)
            self._held.clear()
            self._feed(held)

    def _reject(self, status: int) -> None:
        self._write_reject(RejectConnection(status_code=status))
        self._access("WSREJECT")
        self._notify(1006)
        self._life.fire("reject")
        self._deadline = None

    def _write_reject(self, event: RejectConnection) -> None:
        try:
            self._out += self._ws.send(event)
        except Exception as exc:  # handshake already failed inside wsproto
            log.debug("cannot send rejection: %s", exc)

    def _send_message(self, data: str | bytes) -> None:
        # One unfragmented frame, built here (what wsproto would send, without its per-frame
        # objects); wsproto's frame state only matters for fragmented sends, which we never do.
        if self._ws.state is not ConnectionState.OPEN:
            return
        if isinstance(data, str):
            opcode, payload = OP_TEXT, data.encode("utf-8")
        else:
            opcode, payload = OP_BINARY, bytes(data)
        if self._deflate_on:
            self._out += encode_frame(opcode, self._deflate.deflate_message(payload), True)
        else:
            self._out += encode_frame(opcode, payload)

    def _local_close(self, code: int, notify: bool) -> None:
        self._write(CloseConnection(code=code))
        if notify:
            self._notify(code)
        self._access("WSDISCONNECT")
        self._life.fire("close")
        self._deadline = self._clock() + self.options.websocket_close_timeout

    def _drop(self, code: int, notify: bool = True) -> None:
        state = self._life.state
        if state is WSState.CLOSED:
            return
        if notify:
            self._notify(code)
        if state is WSState.OPEN or state is WSState.HANDSHAKE:
            self._access("WSDISCONNECT")
        self._life.fire("drop")
        self._deadline = None

    def _notify(self, code: int) -> None:
        # Exactly one websocket.disconnect per connection that sent a connect (asgi1.md §8).
        if self._notified or self._muted:
            return
        self._notified = True
        self._order += 1
        self._effects.append(LayerSend(
            "websocket.disconnect", _asgi1.websocket_disconnect(self.reply_channel, self.path, int(code), self._order),
            OnFull.DROP))

    def _set_open_deadline(self) -> None:
        if self._ping_sent is not None:
            deadline = self._ping_sent + self.options.ping_timeout
        else:
            deadline = self._last_rx + self.options.ping_interval
        if self._lifetime is not None:
            deadline = min(deadline, self._started + self._lifetime)
        self._deadline = deadline

    def _write(self, event: Any) -> None:
        try:
            self._out += self._ws.send(event)
        except Exception as exc:  # wsproto LocalProtocolError: state raced with the peer
            log.debug("cannot send %s on %s: %s", type(event).__name__, self.reply_channel, exc)

    def _access(self, verb: str) -> None:
        self._effects.append(AccessRecord(self._client, f"{verb} {self.path}"))
