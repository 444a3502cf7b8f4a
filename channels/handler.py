"""Django's request/response cycle driven by ASGI 1 ``http.request`` messages.

Theory of operation
-------------------
A worker receives an ``http.request`` message (asgi1.md §7) and hands it to
:class:`ViewConsumer`, the default consumer for that channel. The consumer calls an
:class:`AsgiHandler`, a Django ``BaseHandler``: it builds an :class:`AsgiRequest` from the
message, runs Django's middleware, URLconf, views and exception handling exactly as the
WSGI handler does, and sends the response back on the message's reply channel as one
*Response* message followed by *Response Chunk* messages.

The request body is ``body`` plus every ``content`` chunk read from ``body_channel`` (a
single-reader ``?`` channel). It is spooled into a ``SpooledTemporaryFile`` so a large
upload goes to disk instead of one huge ``bytes``; Django's own checks
(``DATA_UPLOAD_MAX_MEMORY_SIZE`` → ``RequestDataTooBig`` → 413) then apply unchanged.
If no chunk arrives for :attr:`AsgiRequest.body_receive_timeout` seconds the request
ends in 408; a chunk with ``closed: True`` means the client left, and nothing is answered.

Response sends bypass the held-send store on purpose (Channels 1.x used
``immediately=True`` here): a streamed response must reach the client as it is produced,
not when the consumer returns. A send that meets ``ChannelFull`` waits and retries for at
most :attr:`AsgiHandler.send_timeout` seconds (asgi1.md §5: "app → HTTP response: wait,
retry; may give up"); Channels 1.x retried forever, which let one vanished client pin a
worker thread.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any, Iterator, Mapping

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestDataTooBig
from django.core.handlers import base
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseServerError,
    QueryDict,
    parse_cookie,
)
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix
from django.utils.functional import cached_property

from channels._retry import retry_while_full
from channels.exceptions import RequestAborted, RequestTimeout, ResponseLater
from shmlayer.contract import ChannelFull, MessageTooLarge

__all__ = ["AsgiHandler", "AsgiRequest", "InvalidRequestMessage", "ViewConsumer"]

logger = logging.getLogger("django.channels.handler")

#: Largest ``content`` in one response message (Channels 1.x used the same 512 KiB).
CHUNK_SIZE = 512 * 1024
#: Part of a layer's max_message_size kept free for status, headers and encoding.
_HEAD_ROOM = 64 * 1024


class InvalidRequestMessage(ValueError):
    """The ``http.request`` message breaks asgi1.md §7 (missing key, wrong type).

    The handler answers it with 400; it is never a worker crash.
    """


def _raw_layer(message: Any) -> Any:
    """The layer object of ``message`` (unwrapping a ``ChannelLayerWrapper``)."""
    layer = getattr(message, "channel_layer", None)
    return getattr(layer, "channel_layer", layer)


def _content(message: Any) -> Mapping[str, Any]:
    """The content dict of a ``channels.message.Message`` (or a plain dict)."""
    content = getattr(message, "content", message)
    if not isinstance(content, Mapping):
        raise InvalidRequestMessage(f"http.request message must be a dict, not {type(content).__name__}")
    return content


def _text(value: Any, key: str, default: str | None = None) -> str:
    """A str field of the message; bytes are accepted and decoded as UTF-8."""
    if value is None:
        if default is None:
            raise InvalidRequestMessage(f"http.request message has no {key!r}")
        return default
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestMessage(f"http.request {key!r} is not UTF-8") from None
    if not isinstance(value, str):
        raise InvalidRequestMessage(f"http.request {key!r} must be str, not {type(value).__name__}")
    return value


def _latin1(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise InvalidRequestMessage(f"http.request header {what} must be bytes, not {type(value).__name__}")


def _address(value: Any, key: str) -> tuple[str, str] | None:
    """``client``/``server`` → (host, port as str), or None when absent."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InvalidRequestMessage(f"http.request {key!r} must be [host, port]")
    host, port = value
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, (int, str)):
        raise InvalidRequestMessage(f"http.request {key!r} must be [str, int]")
    return host, str(port)


def header_meta(headers: Any) -> dict[str, str]:
    """Turn ASGI ``headers`` into WSGI META keys (CONTENT_TYPE, CONTENT_LENGTH, HTTP_*).

    Repeated headers are joined with ``","`` (RFC 9110 §5.3), except ``Cookie``, which is
    joined with ``"; "`` (RFC 9113 §8.2.3) so that ``parse_cookie`` still splits it.
    Names holding ``_`` are dropped: ``X_Forwarded`` and ``X-Forwarded`` would both map to
    ``HTTP_X_FORWARDED`` (CVE-2015-0219).

    Raises:
        InvalidRequestMessage: ``headers`` is not a list of [name, value] pairs.
    """
    if headers is None:
        headers = []
    if not isinstance(headers, (list, tuple)):
        raise InvalidRequestMessage("http.request 'headers' must be a list of [name, value]")
    collected: dict[str, list[str]] = {}
    for pair in headers:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InvalidRequestMessage("http.request 'headers' must be a list of [name, value]")
        name = _latin1(pair[0], "name").lower()
        value = _latin1(pair[1], "value")
        if "_" in name:
            continue
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        collected.setdefault(key, []).append(value)
    return {key: ("; " if key == "HTTP_COOKIE" else ",").join(values) for key, values in collected.items()}


class AsgiRequest(HttpRequest):
    """A Django ``HttpRequest`` built from an ASGI 1 ``http.request`` message.

    META follows the WSGI mapping of asgi1.md §7. The whole body is read here, in the
    constructor (as Channels 1.x did), so a timeout or an aborted upload is known before
    any view runs.

    Args:
        message: a ``channels.message.Message`` on ``http.request``.

    Raises:
        InvalidRequestMessage: the message breaks asgi1.md §7 (the handler answers 400).
        RequestTimeout: no body chunk for ``body_receive_timeout`` seconds (→ 408).
        RequestAborted: a body chunk said ``closed`` (the client is gone; no answer).
    """

    #: Seconds without a body chunk before the request gives up with 408.
    body_receive_timeout: float = 60

    def __init__(self, message: Any) -> None:
        self.message = message
        content = _content(message)
        self.reply_channel = getattr(message, "reply_channel", None)
        self._post_parse_error = False
        self._read_started = False
        self.resolver_match = None
        self._build_path(content)
        self.method = _text(content.get("method"), "method").upper()
        self.META = self._build_meta(content)
        self._set_content_type_params(self.META)
        self._data_too_big = False
        self._body_limit = self._in_memory_limit()
        try:
            declared = int(self.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = -1
        if declared < 0:
            raise InvalidRequestMessage("http.request Content-Length is not a number >= 0")
        self._check_limit(declared)
        self._stream = self._read_body(content)
        if "CONTENT_LENGTH" not in self.META:
            # A chunked upload has no Content-Length; Django's multipart parser reads
            # nothing without one, so state the length actually received.
            size = self._stream.seek(0, 2)
            self._stream.seek(0)
            if size:
                self.META["CONTENT_LENGTH"] = str(size)

    def _in_memory_limit(self) -> int | None:
        """DATA_UPLOAD_MAX_MEMORY_SIZE for bodies Django reads whole; None for multipart.

        Multipart file parts stream to upload handlers and do not count (Django's rule);
        its non-file fields are still checked by Django's multipart parser.
        """
        if self.content_type == "multipart/form-data":
            return None
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    def _check_limit(self, size: int) -> None:
        if self._body_limit is not None and size > self._body_limit:
            self._data_too_big = True
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")

    @property
    def body(self) -> bytes:
        """The whole body (Django's); flags an over-limit body so the handler answers 413."""
        try:
            return super().body
        except RequestDataTooBig:
            self._data_too_big = True
            raise

    def _load_post_and_files(self) -> None:
        try:
            super()._load_post_and_files()
        except RequestDataTooBig:
            self._data_too_big = True
            raise

    def _build_path(self, content: Mapping[str, Any]) -> None:
        self.path = _text(content.get("path"), "path")
        if not self.path.startswith("/"):
            raise InvalidRequestMessage(f"http.request 'path' must start with '/': {self.path[:80]!r}")
        root_path = _text(content.get("root_path"), "root_path", default="")
        prefix = root_path.rstrip("/")
        if prefix and (self.path == prefix or self.path.startswith(prefix + "/")):
            self.path_info = self.path[len(prefix):] or "/"
        else:
            self.path_info = self.path
        self.script_name = settings.FORCE_SCRIPT_NAME or prefix

    def _build_meta(self, content: Mapping[str, Any]) -> dict[str, Any]:
        query_string = content.get("query_string", b"")
        if isinstance(query_string, bytes):
            try:
                query_string = query_string.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequestMessage("http.request 'query_string' is not UTF-8") from None
        elif not isinstance(query_string, str):
            raise InvalidRequestMessage("http.request 'query_string' must be bytes")
        scheme = _text(content.get("scheme"), "scheme", default="http") or "http"
        http_version = _text(content.get("http_version"), "http_version", default="1.1")
        meta: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": self.path_info,
            "QUERY_STRING": query_string,
            "SERVER_PROTOCOL": "HTTP/" + http_version,
            "wsgi.url_scheme": scheme,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        client = _address(content.get("client"), "client")
        if client is not None:
            meta["REMOTE_ADDR"], meta["REMOTE_PORT"] = client
            meta["REMOTE_HOST"] = client[0]
        server = _address(content.get("server"), "server")
        meta["SERVER_NAME"], meta["SERVER_PORT"] = server or ("unknown", "0")
        meta.update(header_meta(content.get("headers")))
        return meta

    def _read_body(self, content: Mapping[str, Any]) -> Any:
        """Spool ``body`` and every ``body_channel`` chunk into a temporary file."""
        body = content.get("body", b"")
        if body is None:
            body = b""
        if not isinstance(body, bytes):
            raise InvalidRequestMessage("http.request 'body' must be bytes")
        stream = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        try:
            stream.write(body)
            self._check_limit(len(body))
            body_channel = content.get("body_channel")
            if body_channel:
                self._read_body_channel(body_channel, stream)
            stream.seek(0)
        except BaseException:
            stream.close()
            raise
        return stream

    def _read_body_channel(self, body_channel: Any, stream: Any) -> None:
        if not isinstance(body_channel, str):
            raise InvalidRequestMessage("http.request 'body_channel' must be a str")
        layer = _raw_layer(self.message)
        if layer is None:
            raise InvalidRequestMessage("http.request has a 'body_channel' but no channel layer to read it from")
        last_chunk = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                _, chunk = layer.receive([body_channel], block=True)
            except (TypeError, ValueError) as exc:
                raise InvalidRequestMessage(f"http.request 'body_channel' cannot be read: {exc}") from None
            now = time.monotonic()
            if chunk is None:
                if now - last_chunk > self.body_receive_timeout:
                    raise RequestTimeout()
                if now - started < 0.005:
                    # A layer that ignores block=True must not turn this into a spin.
                    time.sleep(0.01)
                continue
            last_chunk = now
            if chunk.get("closed", False):
                raise RequestAborted()
            data = chunk.get("content", b"")
            if data is None:
                data = b""
            if not isinstance(data, bytes):
                raise InvalidRequestMessage("request body chunk 'content' must be bytes")
            stream.write(data)
            self._check_limit(stream.tell())
            if not chunk.get("more_content", False):
                return

    def _get_scheme(self) -> str:
        return self.META.get("wsgi.url_scheme") or "http"

    @cached_property
    def GET(self) -> QueryDict:  # noqa: N802 - Django's name
        return QueryDict(self.META["QUERY_STRING"], encoding=self._encoding)

    def _get_post(self) -> QueryDict:
        if not hasattr(self, "_post"):
            self._load_post_and_files()
        return self._post

    def _set_post(self, post: QueryDict) -> None:
        self._post = post

    def _get_files(self) -> Any:
        if not hasattr(self, "_files"):
            self._load_post_and_files()
        return self._files

    POST = property(_get_post, _set_post)
    FILES = property(_get_files)

    @cached_property
    def COOKIES(self) -> dict[str, str]:  # noqa: N802 - Django's name
        return parse_cookie(self.META.get("HTTP_COOKIE", ""))

    def close(self) -> None:
        """Close uploaded files and the spooled body (Django calls it after the response)."""
        super().close()
        self._stream.close()


def _response_headers(response: HttpResponseBase) -> list[list[bytes]]:
    headers = [[str(name).encode("latin-1"), str(value).encode("latin-1")] for name, value in response.items()]
    # One header per cookie: Set-Cookie must never be joined (RFC 6265 §3).
    for cookie in response.cookies.values():
        headers.append([b"Set-Cookie", cookie.output(header="").strip().encode("latin-1")])
    return headers


def _too_big() -> HttpResponse:
    return HttpResponse("413 Request body too large", status=413)


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


class AsgiHandler(base.BaseHandler):
    """Django's handler for ASGI 1 ``http.request`` messages.

    Calling it with a message runs the whole Django request cycle (``request_started``,
    middleware, URLconf, view, exception handling, ``request_finished``) and sends the
    response on ``message.reply_channel``. One instance is shared by every worker thread,
    as a WSGI handler is.
    """

    request_class = AsgiRequest
    #: Largest ``content`` in one response message.
    chunk_size: int = CHUNK_SIZE
    #: Seconds a reply send keeps retrying on ChannelFull before the response is dropped.
    send_timeout: float = 30

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()

    def __call__(self, message: Any) -> None:
        """Handle one ``http.request`` message and send its response.

        Args:
            message: a ``channels.message.Message`` on ``http.request``.
        """
        try:
            reply_channel = _content(message).get("reply_channel")
        except InvalidRequestMessage:
            reply_channel = None
        layer = _raw_layer(message)
        if not isinstance(reply_channel, str) or layer is None:
            logger.error("http.request message without a usable reply_channel; dropped")
            return
        replies = self.handle(message, chunk_size=self.chunk_size_for(layer))
        try:
            for reply in replies:
                if not send_reply(layer, reply_channel, reply, self.send_timeout):
                    logger.warning(
                        "Reply channel %s stayed full or gone for %ss; response abandoned",
                        reply_channel, self.send_timeout,
                    )
                    return
        except MessageTooLarge:
            logger.error("A response message for %s is over the layer's size limit; response abandoned", reply_channel)
        finally:
            replies.close()

    def chunk_size_for(self, layer: Any) -> int:
        """:attr:`chunk_size`, lowered to fit a layer configured with small messages.

        64 KiB of a message are left for the status, headers and serialisation.
        """
        limit = getattr(layer, "max_message_size", None)
        if isinstance(limit, int) and limit - _HEAD_ROOM < self.chunk_size:
            return max(limit - _HEAD_ROOM, limit // 2, 1)
        return self.chunk_size

    def handle(self, message: Any, chunk_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Run Django for ``message`` and yield the response messages (no sending).

        Closing the generator early (a consumer that gives up) still closes the response,
        so ``request_finished`` is sent and files are released.

        Args:
            message: a ``channels.message.Message`` on ``http.request``.
            chunk_size: largest ``content`` per message (default :attr:`chunk_size`).

        Yields:
            The Response message, then Response Chunk messages (asgi1.md §7).
        """
        path: Any = None
        try:
            content = _content(message)
            path = content.get("path")
            root_path = _text(content.get("root_path"), "root_path", default="")
        except InvalidRequestMessage:
            root_path = ""
        set_script_prefix(settings.FORCE_SCRIPT_NAME or root_path.rstrip("/") or "/")
        signals.request_started.send(sender=self.__class__, message=message)
        try:
            request = self.request_class(message)
        except InvalidRequestMessage as exc:
            logger.warning("Bad http.request message: %s", exc)
            response: HttpResponseBase = HttpResponseBadRequest(f"400 Bad Request: {exc}")
        except RequestTimeout:
            response = HttpResponse("408 Request Timeout (upload too slow)", status=408)
        except RequestDataTooBig:
            response = _too_big()
        except RequestAborted:
            # The client went away mid-upload: nobody to answer.
            signals.request_finished.send(sender=self.__class__)
            return
        except Exception:
            # Not the view (Django's exception handling covers that): building the request
            # itself failed. Answer rather than leave the client to the interface's timeout.
            logger.exception("Could not build a request from an http.request message")
            response = HttpResponseServerError("500 Internal Server Error")
        else:
            response = self.get_response(request)
            if getattr(request, "_response_later", False):
                # The view promised that something else answers on the reply channel.
                response._handler_class = self.__class__
                response.close()
                return
            if request._data_too_big and response.status_code == 400:
                # Django answers RequestDataTooBig with 400; HTTP has 413 for it (RFC 9110
                # §15.5.14), which Channels 1.x sent. The request's closers move over.
                replacement = _too_big()
                replacement._resource_closers.extend(response._resource_closers)
                response._resource_closers.clear()
                response = replacement
        response._handler_class = self.__class__
        size = chunk_size or self.chunk_size
        if isinstance(response, FileResponse):
            response.block_size = size
        try:
            yield from self.encode_response(response, chunk_size=size)
        except Exception:
            # The status line is out already; stop here and let the interface time the
            # connection out rather than end a truncated body as if it were complete.
            logger.exception("Error while streaming the response to %r", path)
        finally:
            response.close()

    def _get_response(self, request: HttpRequest) -> HttpResponseBase:
        # The innermost step of the middleware chain: a view raising ResponseLater must
        # not become a 500. Middleware sees a placeholder that is never sent.
        try:
            return super()._get_response(request)
        except ResponseLater:
            request._response_later = True
            return HttpResponse(status=204)

    @classmethod
    def encode_response(cls, response: HttpResponseBase, chunk_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Turn a Django response into ASGI 1 response messages.

        Args:
            response: any Django response; ``StreamingHttpResponse`` and ``FileResponse``
                are read chunk by chunk as they are produced.
            chunk_size: largest ``content`` per message (default :attr:`chunk_size`).

        Yields:
            ``{"status", "headers", "content", "more_content"}`` first, then
            ``{"content", "more_content"}`` chunks; the last has ``more_content: False``.
        """
        size = chunk_size or cls.chunk_size
        head = {"status": response.status_code, "headers": _response_headers(response)}
        if response.streaming:
            yield {**head, "content": b"", "more_content": True}
            for part in response:
                for piece in _split(bytes(part), size):
                    yield {"content": piece, "more_content": True}
            yield {"content": b"", "more_content": False}
            return
        body = response.content
        pieces = list(_split(body, size)) or [b""]
        for index, piece in enumerate(pieces):
            more = index < len(pieces) - 1
            if index == 0:
                yield {**head, "content": piece, "more_content": more}
            else:
                yield {"content": piece, "more_content": more}


def send_reply(layer: Any, channel: str, content: dict[str, Any], timeout: float) -> bool:
    """Send ``content`` on ``channel``, waiting out ``ChannelFull`` for up to ``timeout`` s.

    Args:
        layer: the raw channel layer.
        channel: the reply channel name.
        content: the message.
        timeout: seconds to keep retrying while the channel is full.

    Returns:
        True once sent; False if the channel stayed full for ``timeout`` seconds.

    Raises:
        MessageTooLarge: the message is over the layer's limit.
    """
    full = getattr(layer, "ChannelFull", ChannelFull)
    return retry_while_full(lambda: layer.send(channel, content), full, time.monotonic() + timeout, 0.005, 0.1)


class ViewConsumer:
    """The default ``http.request`` consumer: Django's views answer.

    In DEBUG with ``django.contrib.staticfiles`` installed, ``STATIC_URL`` is served from
    the static file finders, as Django's ``runserver`` does.
    """

    handler_class: type[AsgiHandler] = AsgiHandler

    def __init__(self) -> None:
        self.handler = self._make_handler()

    def _make_handler(self) -> AsgiHandler:
        from django.apps import apps

        if settings.DEBUG and apps.is_installed("django.contrib.staticfiles") and self.handler_class is AsgiHandler:
            from channels.staticfiles import StaticFilesHandler

            return StaticFilesHandler()
        return self.handler_class()

    def __call__(self, message: Any, **kwargs: Any) -> None:
        """Answer ``message`` through Django (routing kwargs are ignored)."""
        self.handler(message)

