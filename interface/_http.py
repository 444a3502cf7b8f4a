"""Sans-I/O HTTP/1.1 connection: bytes in → ASGI 1 messages out, replies in → bytes out.

One :class:`HTTPConnection` serves one TCP connection on top of h11 (keep-alive,
pipelining, chunked and Content-Length bodies, Expect: 100-continue, HEAD). It knows
nothing of sockets, event loops or the channel layer: the transport feeds it
``receive_data``/``handle_reply``/``tick`` and carries out what it queued
(``pop_data``/``pop_effects``, see ``_effects.py``).

Lifecycle (table below, applied by ``_lifecycle.Lifecycle``)::

    IDLE --request--> RECEIVING --dispatch--------> WAITING --respond--> RESPONDING
                         |  \\--dispatch_stream--> STREAMING --body_end--^     |
                         |                            \\--respond (early)-----^ |
                         \\--upgrade--> SWITCHED                                 |
    IDLE <--finish (keep-alive)-----------------------------------------------/
    any --close--> CLOSED

RECEIVING buffers the body until it either ends (one ``http.request`` carries it) or
passes ``BODY_CHUNK_SIZE``: then ``http.request`` leaves with the first chunk and a
``body_channel``, and STREAMING forwards the rest chunk by chunk (asgi1.md §7). Only a
chunk or so is ever held: the transport pauses reading while a chunk waits for room
in the layer. A pipelined request is held, unparsed, until the response to the one
before it is finished, so answers come back in order.
"""

from __future__ import annotations

import email.utils
import http
import logging
import time
from enum import Enum
from typing import Any, Callable, Mapping

import h11

from . import _asgi1
from ._effects import AccessRecord, CancelSends, ConnInfo, LayerSend, OnFull, Refusal, Upgrade
from ._lifecycle import ConnectionCore
from ._options import BODY_CHUNK_SIZE, Options

__all__ = ["HTTPConnection", "HTTPState"]

log = logging.getLogger("interface.http")

#: Pipelined bytes held while a response is pending before reading pauses.
MAX_HELD = 64 * 1024


class HTTPState(Enum):
    """Where one HTTP connection is in its request/response cycle (RFC 9112 §9)."""

    #: Between requests (new connection or keep-alive idle); a head may be arriving.
    IDLE = 0
    #: Head received; the body is being buffered; ``http.request`` not sent yet.
    RECEIVING = 1
    #: ``http.request`` sent with a ``body_channel``; body chunks being forwarded.
    STREAMING = 2
    #: The whole request was handed over; waiting for the application's Response.
    WAITING = 3
    #: Response started (status sent); waiting for more chunks.
    RESPONDING = 4
    #: The connection was upgraded to WebSocket; a WebSocket core owns it now.
    SWITCHED = 5
    #: Done; the transport closes the socket after writing what is queued.
    CLOSED = 6


_S = HTTPState
TRANSITIONS: dict[tuple[HTTPState, str], HTTPState] = {
    (_S.IDLE, "request"): _S.RECEIVING,
    (_S.RECEIVING, "dispatch"): _S.WAITING,
    (_S.RECEIVING, "dispatch_stream"): _S.STREAMING,
    (_S.RECEIVING, "upgrade"): _S.SWITCHED,
    (_S.STREAMING, "body_end"): _S.WAITING,
    (_S.STREAMING, "respond"): _S.RESPONDING,
    (_S.WAITING, "respond"): _S.RESPONDING,
    (_S.RESPONDING, "finish"): _S.IDLE,
    **{(state, "close"): _S.CLOSED for state in HTTPState if state is not _S.CLOSED},
}

_NO_BODY_STATUSES = frozenset((204, 304))
_REASONS = {status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}
_date_cache: list[Any] = [0, b""]


def _http_date() -> bytes:
    # Formatting a date per response is measurable; one string per second is enough.
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True).encode("ascii")
    return _date_cache[1]  # type: ignore[no-any-return]


def _has_token(value: bytes | None, token: bytes) -> bool:
    return value is not None and any(part.strip().lower() == token for part in value.split(b","))


class HTTPConnection(ConnectionCore[HTTPState]):
    """One HTTP/1.1 connection's protocol state.

    Args:
        info: addresses and the reply-channel prefix of this connection.
        options: server options (limits, timeouts, proxy settings).
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, info: ConnInfo, options: Options, clock: Callable[[], float] = time.monotonic) -> None:
        self.info = info
        self.options = options
        super().__init__(TRANSITIONS, HTTPState.IDLE, HTTPState.CLOSED)
        self._clock = clock
        head_limit = options.limit_request_line + 4 + min(
            options.limit_request_fields * (options.limit_request_field_size + 4), 64 * 1024)
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=head_limit)
        self._held = bytearray()
        self._count = 0
        self._draining = False
        self._head_started: float | None = None
        self._deadline = clock() + options.header_timeout
        # Per-request fields, reset by _reset_request().
        self._request: h11.Request | None = None
        self._method = ""
        self._path = ""
        self._reply_local = ""
        self._reply_channel = ""
        self._body = bytearray()
        self._body_size = 0
        self._body_channel: str | None = None
        self._upgrade = False
        self._status = 0
        self._no_body = False
        self._sent_length = 0
        self._scope: _asgi1.RequestScope | None = None

    # -- what the transport reads ------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        """False while reading should pause (pipelined data piling up, or closed)."""
        state = self._life.state
        return state is not HTTPState.CLOSED and state is not HTTPState.SWITCHED and len(self._held) < MAX_HELD

    @property
    def busy(self) -> bool:
        """True while a request is in progress (graceful shutdown waits for these)."""
        return self._life.state not in (HTTPState.IDLE, HTTPState.CLOSED, HTTPState.SWITCHED) or (
            self._head_started is not None)

    @property
    def reply_local(self) -> str:
        """Local part (after ``!``) of the current request's reply channel, or ""."""
        return self._reply_local

    # -- inputs ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed its side.

        Args:
            data: the bytes, or b"" at end of file.
        """
        state = self._life.state
        if state is HTTPState.CLOSED or state is HTTPState.SWITCHED:
            return
        if not data:
            self._peer_gone()
            return
        if state is HTTPState.IDLE and self._head_started is None:
            self._head_started = self._clock()
            self._deadline = self._head_started + self.options.header_timeout
        if (state is HTTPState.WAITING or state is HTTPState.RESPONDING) and self._h11.their_state is h11.DONE:
            # Pipelined: the next request waits for this response (answered in order).
            self._held += data
            return
        self._h11.receive_data(data)
        self._parse()

    def connection_lost(self) -> None:
        """The socket broke (reset, write error): as EOF, without anything to write."""
        self._peer_gone()

    def handle_reply(self, local: str, message: Mapping[str, Any]) -> None:
        """A message arrived on reply channel ``<prefix>!<local>``.

        Replies for an earlier request of this connection, or after the response ended,
        are dropped (asgi1.md §7: later messages are ignored).
        """
        state = self._life.state
        if local != self._reply_local or state not in (HTTPState.STREAMING, HTTPState.WAITING, HTTPState.RESPONDING):
            log.debug("dropping reply on finished reply channel %s!%s", self.info.reply_prefix, local)
            return
        try:
            reply = _asgi1.parse_http_reply(message, started=state is HTTPState.RESPONDING)
        except _asgi1.ReplyError as exc:
            log.error("bad reply on %s for %s %s: %s", self._reply_channel, self._method, self._path, exc)
            if state is HTTPState.RESPONDING:
                self._abort()
            else:
                self._fail(500, b"Internal Server Error", notify=True)
            return
        if isinstance(reply, _asgi1.ResponseStart):
            self._start_response(reply)
        else:
            self._send_body(reply.content, reply.more_content)

    def send_refused(self, send: LayerSend, refusal: Refusal = Refusal.FULL) -> None:
        """The layer refused ``send`` (after the retry policy, for a full channel).

        Args:
            send: the refused send.
            refusal: FULL → 503; TOO_LARGE → 413 for a request with a body (it carries
                up to 512 KiB of it), 431 for one without (its headers did it), 500 for a
                body chunk; FAILED → 500.
        """
        if self._life.state is HTTPState.CLOSED:
            return
        request = send.channel == "http.request"
        if refusal is Refusal.FAILED or (refusal is Refusal.TOO_LARGE and not request):
            log.error("%s message for %s %s could not be sent: 500", send.channel, self._method, self._path)
            self._fail(500, b"Internal Server Error", notify=not request)
        elif refusal is Refusal.TOO_LARGE:
            status, reason = ((413, b"Request Entity Too Large") if send.message.get("body")
                              else (431, b"Request Header Fields Too Large"))
            log.warning("http.request too large for the layer: %d for %s %s", status, self._method, self._path)
            self._fail(status, reason, notify=False)
        elif request:
            log.warning("http.request channel full: 503 for %s %s", self._method, self._path)
            self._fail(503, b"Request queue full.", notify=False)
        else:
            log.warning("body channel %s stayed full: abandoning upload of %s", send.channel, self._path)
            self._fail(503, b"Request body not read in time.", notify=True)

    def tick(self) -> None:
        """Apply whichever timeout has passed (call when ``clock() >= deadline``)."""
        if self._deadline is None or self._clock() < self._deadline:
            return
        state = self._life.state
        if state is HTTPState.IDLE:
            if self._head_started is not None:
                self._fail(408, b"Request Timeout", notify=False)
            else:
                self._close()
        elif state is HTTPState.RECEIVING or state is HTTPState.STREAMING:
            self._fail(408, b"Request Timeout", notify=True)
        elif state is HTTPState.WAITING:
            log.warning("no response within %ss to %s %s: 503", self.options.http_timeout, self._method, self._path)
            self._fail(503, b"Worker server failed to respond within time limit.", notify=True)
        elif state is HTTPState.RESPONDING:
            log.warning("response to %s %s idle for %ss: aborting", self._method, self._path,
                        self.options.http_idle_timeout)
            self._abort()

    def shutdown(self, code: int = 1001) -> None:
        """Graceful stop: close when idle, let the request in progress finish first.

        Args:
            code: the WebSocket close code (the cores share one signature); unused here.
        """
        self._draining = True
        if not self.busy:
            self._close()

    def abort(self, code: int = 1012) -> None:
        """Stop now: answer 503 if no response started, else cut the response.

        Args:
            code: the WebSocket close code (the cores share one signature); unused here.
        """
        state = self._life.state
        if state is HTTPState.RESPONDING:
            self._abort()
        elif state in (HTTPState.RECEIVING, HTTPState.STREAMING, HTTPState.WAITING):
            self._fail(503, b"Service Unavailable", notify=state is not HTTPState.RECEIVING)
        elif state is HTTPState.IDLE:
            self._close()

    # -- parsing -----------------------------------------------------------------------------

    def _parse(self) -> None:
        while True:
            state = self._life.state
            if state is HTTPState.CLOSED or state is HTTPState.SWITCHED:
                return
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                reason = b"Request Header Fields Too Large" if status == 431 else b"Bad Request"
                log.info("malformed request from %s: %s", self.info.client, exc)
                self._fail(status, reason, notify=self._life.state is not HTTPState.IDLE
                           and self._life.state is not HTTPState.RECEIVING)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            kind = type(event)
            if kind is h11.Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif kind is h11.Data:
                self._on_body(event.data)  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                self._on_body_end()
            elif kind is h11.ConnectionClosed:
                self._peer_gone()
                return

    def _on_request(self, request: h11.Request) -> None:
        self._life.fire("request")
        self._request = request
        self._count += 1
        self._reply_local = f"{self.info.reply_prefix.partition('!')[2]}.{self._count}"
        self._reply_channel = f"{self.info.reply_prefix}.{self._count}"
        self._method = request.method.decode("ascii").upper()
        self._head_started = None
        self._deadline = self._clock() + self.options.http_timeout
        target = request.target
        self._path = target.decode("latin-1")
        opts = self.options
        if len(request.method) + len(target) + 10 > opts.limit_request_line:
            self._fail(400, b"Request Line Too Long", notify=False)
            return
        if len(request.headers) > opts.limit_request_fields:
            self._fail(431, b"Too Many Request Header Fields", notify=False)
            return
        for name, value in request.headers:
            if len(name) + len(value) + 2 > opts.limit_request_field_size:
                self._fail(431, b"Request Header Field Too Large", notify=False)
                return
        headers = request.headers
        upgrade = connection = length = None
        for name, value in headers:
            if name == b"upgrade":
                upgrade = value
            elif name == b"connection":
                connection = value
            elif name == b"content-length":
                length = value
        self._upgrade = (request.method == b"GET" and _has_token(upgrade, b"websocket")
                         and _has_token(connection, b"upgrade"))
        try:
            self._scope = _asgi1.request_scope(target, list(headers), self.info.client, self.info.server,
                                               opts, websocket=self._upgrade)
        except _asgi1.BadRequest as exc:
            log.info("bad request from %s: %s", self.info.client, exc)
            self._fail(400, b"Bad Request", notify=False)
            return
        self._path = self._scope.path
        if opts.max_body_size is not None and length is not None and int(length) > opts.max_body_size:
            self._fail(413, b"Payload Too Large", notify=False)
            return
        if self._h11.they_are_waiting_for_100_continue and not self._upgrade:
            # We read the body straight away (it is forwarded as it arrives), so say so.
            self._write(h11.InformationalResponse(status_code=100, headers=[]))

    def _on_body(self, data: bytes) -> None:
        state = self._life.state
        if state is HTTPState.RESPONDING:
            return  # the application answered early: the rest of the upload is discarded
        self._body_size += len(data)
        # A slow but moving upload is fine: the body may pause at most http_idle_timeout.
        self._deadline = self._clock() + self.options.http_idle_timeout
        limit = self.options.max_body_size
        if limit is not None and self._body_size > limit:
            self._fail(413, b"Payload Too Large", notify=state is HTTPState.STREAMING)
            return
        self._body += data
        if state is HTTPState.RECEIVING and len(self._body) > BODY_CHUNK_SIZE:
            self._body_channel = _asgi1.new_body_channel()
            first = bytes(self._body[:BODY_CHUNK_SIZE])
            del self._body[:BODY_CHUNK_SIZE]
            self._dispatch(first, self._body_channel)
            self._life.fire("dispatch_stream")
        if self._life.state is HTTPState.STREAMING:
            while len(self._body) > BODY_CHUNK_SIZE:
                chunk = bytes(self._body[:BODY_CHUNK_SIZE])
                del self._body[:BODY_CHUNK_SIZE]
                self._send_chunk(chunk, more=True)

    def _on_body_end(self) -> None:
        state = self._life.state
        if state is HTTPState.RECEIVING:
            if self._upgrade:
                assert self._request is not None
                self._life.fire("upgrade")
                self._deadline = None
                self._effects.append(Upgrade(self._request, self._h11.trailing_data[0]))
                return
            body = bytes(self._body)
            self._body.clear()
            self._dispatch(body, None)
            if self._life.state is HTTPState.RECEIVING:
                self._life.fire("dispatch")
                self._deadline = self._clock() + self.options.http_timeout
        elif state is HTTPState.STREAMING:
            self._send_chunk(bytes(self._body), more=False)
            self._body.clear()
            self._life.fire("body_end")
            self._deadline = self._clock() + self.options.http_timeout
        elif state is HTTPState.RESPONDING and self._h11.our_state is h11.DONE:
            self._finish()

    def _dispatch(self, body: bytes, body_channel: str | None) -> None:
        assert self._scope is not None and self._request is not None
        message = _asgi1.http_request(self._scope, self._reply_channel, self._request.http_version.decode("ascii"),
                                      self._method, body, body_channel)
        self._effects.append(LayerSend("http.request", message, OnFull.REFUSE))

    def _send_chunk(self, content: bytes, more: bool) -> None:
        assert self._body_channel is not None
        self._effects.append(LayerSend(self._body_channel, _asgi1.body_chunk(content, more), OnFull.RETRY,
                                       retry_for=self.options.http_timeout))

    # -- responding --------------------------------------------------------------------------

    def _start_response(self, reply: _asgi1.ResponseStart) -> None:
        headers = list(reply.headers)
        names = {name.lower() for name, _ in headers}
        no_body = self._method == "HEAD" or reply.status in _NO_BODY_STATUSES or reply.status < 200
        if not reply.more_content and b"content-length" not in names and b"transfer-encoding" not in names \
                and reply.status not in _NO_BODY_STATUSES and reply.status >= 200:
            headers.append((b"content-length", str(len(reply.content)).encode("ascii")))
        if self.options.server_name and b"server" not in names:
            headers.append((b"server", self.options.server_name.encode("latin-1")))
        if b"date" not in names:
            headers.append((b"date", _http_date()))
        if self._draining or self._life.state is HTTPState.STREAMING:
            # Draining, or answering before the upload ended: this is the last response.
            headers.append((b"connection", b"close"))
        try:
            response = h11.Response(status_code=reply.status, headers=headers,
                                    reason=_REASONS.get(reply.status, b""))
        except h11.LocalProtocolError as exc:
            log.error("invalid response headers from the application for %s %s: %s", self._method, self._path, exc)
            self._fail(500, b"Internal Server Error", notify=True)
            return
        if self._body_channel is not None:
            # The application answers: body chunks still waiting for room in a channel it
            # did not drain will never be read (without this they were retried for up to
            # http_timeout after the response).
            self._effects.append(CancelSends(self._body_channel))
            if self._life.state is HTTPState.STREAMING:
                self._effects.append(LayerSend(self._body_channel, _asgi1.body_closed(), OnFull.DROP))
        self._life.fire("respond")
        self._status = reply.status
        self._no_body = no_body
        if not self._write(response):
            return
        self._send_body(reply.content, reply.more_content)

    def _send_body(self, content: bytes, more: bool) -> None:
        if content and not self._no_body:
            if not self._write(h11.Data(data=content)):
                return
            self._sent_length += len(content)
        if more:
            self._deadline = self._clock() + self.options.http_idle_timeout
            return
        if not self._write(h11.EndOfMessage()):
            return
        if self._h11.their_state is h11.DONE or self._h11.their_state is h11.MUST_CLOSE:
            self._finish()
        else:
            # Upload still arriving after a complete early response: the socket cannot be reused.
            self._finish(reuse=False)

    def _finish(self, reuse: bool = True) -> None:
        self._effects.append(AccessRecord(self._scope.client if self._scope else None,
                                          f"{self._method} {self._path}", self._status, self._sent_length))
        self._life.fire("finish")
        self._reset_request()
        if not reuse or self._draining or self._h11.our_state is not h11.DONE \
                or self._h11.their_state is not h11.DONE:
            self._close()
            return
        self._h11.start_next_cycle()
        self._deadline = self._clock() + self.options.keepalive
        if self._held:
            held = bytes(self._held)
            self._held.clear()
            self._h11.receive_data(held)
        # h11 may hold pipelined bytes of its own (read together with the last request).
        self._parse()
        if self._life.state is HTTPState.IDLE and self._h11.trailing_data[0]:
            self._head_started = self._clock()
            self._deadline = self._head_started + self.options.header_timeout

    def _reset_request(self) -> None:
        self._request = None
        self._reply_local = ""
        self._body.clear()
        self._body_size = 0
        self._body_channel = None
        self._upgrade = False
        self._status = 0
        self._sent_length = 0

    def _write(self, event: h11.Event) -> bool:
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError as exc:
            log.error("cannot send %s for %s %s: %s", type(event).__name__, self._method, self._path, exc)
            self._abort()
            return False
        if data:
            self._out += data
        return True

    # -- endings -----------------------------------------------------------------------------

    def _notify_gone(self) -> None:
        # The application holds this request: tell it (asgi1.md §7 http.disconnect, §5 DROP).
        if self._body_channel is not None and self._life.state is HTTPState.STREAMING:
            self._effects.append(LayerSend(self._body_channel, _asgi1.body_closed(), OnFull.DROP))
        self._effects.append(LayerSend("http.disconnect", _asgi1.http_disconnect(self._reply_channel, self._path),
                                       OnFull.DROP))

    def _fail(self, status: int, reason: bytes, notify: bool) -> None:
        """Answer an error (if no response started yet) and close."""
        if notify and self._reply_channel:
            self._notify_gone()
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = reason + b"\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            if self.options.server_name:
                headers.append((b"server", self.options.server_name.encode("latin-1")))
            try:
                self._out += self._h11.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
                self._out += self._h11.send(h11.Data(data=body)) or b""
                self._out += self._h11.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError as exc:
                log.debug("could not send %s: %s", status, exc)
            self._effects.append(AccessRecord(self._scope.client if self._scope else self._client_list(),
                                              f"{self._method or '-'} {self._path or '-'}", status, len(body)))
        self._close()

    def _client_list(self) -> list[Any] | None:
        return [self.info.client[0], self.info.client[1]] if self.info.client else None

    def _abort(self) -> None:
        state = self._life.state
        if state in (HTTPState.STREAMING, HTTPState.WAITING, HTTPState.RESPONDING):
            self._notify_gone()
        self._close()

    def _peer_gone(self) -> None:
        state = self._life.state
        if state in (HTTPState.STREAMING, HTTPState.WAITING, HTTPState.RESPONDING):
            self._notify_gone()
        if state is not HTTPState.CLOSED and state is not HTTPState.SWITCHED:
            self._close()

    def _close(self) -> None:
        if self._life.state is not HTTPState.CLOSED:
            self._life.fire("close")
        self._deadline = None
        self._held.clear()
