"""WebSocket class-based consumers (Channels 1.x ``channels.generic.websockets``).

- :class:`WebsocketConsumer`: ``connect`` / ``receive(text=, bytes=)`` / ``disconnect``,
  with ``send``, ``close``, ``group_send``, auto-joined ``groups`` and opt-in
  ``http_user``, ``channel_session_user`` and ``strict_ordering``.
- :class:`JsonWebsocketConsumer`: the same with JSON frames (``receive(content)``,
  ``send(content)``).
- :class:`WebsocketDemultiplexer`: one socket, several JSON consumers, frames
  ``{"stream": name, "payload": {...}}``; each sub-consumer gets a ``multiplexer``
  kwarg (:class:`WebsocketMultiplexer`) through which its replies are wrapped.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from django.core.serializers.json import DjangoJSONEncoder

from ..auth import channel_and_http_session_user_from_http, channel_session_user_from_http
from ..channel import Group
from ..exceptions import SendNotAvailableOnDemultiplexer
from ..message import Message
from ..sessions import enforce_ordering
from .base import BaseConsumer

__all__ = ["JsonWebsocketConsumer", "WebsocketConsumer", "WebsocketDemultiplexer", "WebsocketMultiplexer"]


def _frame(text: str | None = None, bytes: bytes | None = None, close: Any = False) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if text is not None:
        message["text"] = text
    elif bytes is not None:
        message["bytes"] = bytes
    elif not close:
        raise ValueError("Send text or bytes (or close=True)")
    if close:
        message["close"] = close
    return message


class WebsocketConsumer(BaseConsumer):
    """Base WebSocket consumer: override ``connect``, ``receive``, ``disconnect``.

    Attributes:
        http_user: on connect, copy the HTTP login into the channel session
            (``channel_session_user_from_http``); implies channel sessions.
        http_user_and_session: the same, keeping ``http_session`` on later messages.
        strict_ordering: wrap every handler in ``enforce_ordering``.
        groups: group names every socket joins on connect and leaves on disconnect.
    """

    method_mapping = {
        "websocket.connect": "raw_connect",
        "websocket.receive": "raw_receive",
        "websocket.disconnect": "raw_disconnect",
    }
    http_user = False
    http_user_and_session = False
    strict_ordering = False
    groups: list[str] | None = None

    def get_handler(self, message: Any, **kwargs: Any) -> Callable[..., Any]:
        handler = super().get_handler(message, **kwargs)
        if message.channel.name == "websocket.connect":
            if self.http_user_and_session:
                handler = channel_and_http_session_user_from_http(handler)
            elif self.http_user:
                handler = channel_session_user_from_http(handler)
        if getattr(self, "slight_ordering", False):
            raise ValueError("slight_ordering is gone since Channels 1.0: remove it (connect always runs first)")
        if self.strict_ordering:
            handler = enforce_ordering(handler)
        return handler

    def connection_groups(self, **kwargs: Any) -> list[str]:
        """Groups this socket belongs to (default: ``groups``); override to compute them."""
        return list(self.groups or [])

    def raw_connect(self, message: Any, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).add(message.reply_channel)
        self.connect(message, **kwargs)

    def connect(self, message: Any, **kwargs: Any) -> None:
        """Handle a connect; the default accepts the socket."""
        message.reply_channel.send({"accept": True})

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        if message.get("text") is not None:
            self.receive(text=message["text"], **kwargs)
        else:
            self.receive(bytes=message.get("bytes"), **kwargs)

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        """Handle a frame (exactly one of text/bytes is set); the default ignores it."""

    def send(self, text: str | None = None, bytes: bytes | None = None, close: Any = False) -> None:
        """Send a frame to this socket (``close`` True or a code closes it after)."""
        frame = _frame(text, bytes, close)
        self.message.reply_channel.send(frame)

    @classmethod
    def group_send(cls, name: str, text: str | None = None, bytes: bytes | None = None, close: Any = False) -> None:
        """Send a frame to every socket in group ``name``."""
        Group(name).send(_frame(text, bytes, close))

    def close(self, code: Any = True) -> None:
        """Close this socket (``code`` True means 1000)."""
        self.message.reply_channel.send({"close": code})

    def raw_disconnect(self, message: Any, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        """Handle the socket closing; the default does nothing more."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """A WebsocketConsumer whose text frames are JSON: ``receive(content)``, ``send(content)``.

    Under a :class:`WebsocketDemultiplexer` (a ``multiplexer`` kwarg) ``send`` wraps the
    content in this consumer's stream envelope.
    """

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        text = message.get("text")
        if text is None:
            raise ValueError("JsonWebsocketConsumer got a frame without text (binary frames are not JSON)")
        self.receive(self.decode_json(text), **kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Handle a decoded JSON frame; the default ignores it."""

    def send(self, content: Any, close: Any = False) -> None:  # type: ignore[override]
        multiplexer = self.kwargs.get("multiplexer")
        if multiplexer is not None:
            multiplexer.send(content)
            if close:
                self.close(close)
            return
        super().send(text=self.encode_json(content), close=close)

    @classmethod
    def group_send(cls, name: str, content: Any, close: Any = False) -> None:  # type: ignore[override]
        WebsocketConsumer.group_send(name, cls.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text: str) -> Any:
        return json.loads(text)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)


class WebsocketMultiplexer:
    """Sends one stream's payloads on a shared socket as ``{"stream", "payload"}`` frames."""

    def __init__(self, stream: str, reply_channel: Any) -> None:
        self.stream = stream
        self.reply_channel = reply_channel

    def send(self, payload: Any) -> None:
        self.reply_channel.send(self.encode(self.stream, payload))

    @classmethod
    def encode(cls, stream: str, payload: Any) -> dict[str, Any]:
        return {"text": json.dumps({"stream": stream, "payload": payload}, cls=DjangoJSONEncoder)}

    @classmethod
    def group_send(cls, name: str, stream: str, payload: Any, close: Any = False) -> None:
        message = cls.encode(stream, payload)
        if close:
            message["close"] = close
        Group(name).send(message)


class WebsocketDemultiplexer(JsonWebsocketConsumer):
    """Route JSON frames ``{"stream": s, "payload": p}`` to ``consumers[s]``.

    Connect and disconnect go to every sub-consumer. Each is called with the message
    (its ``text`` replaced by the payload's JSON for receives) and a ``multiplexer`` kwarg.

    Attributes:
        consumers: ``{stream name: JsonWebsocketConsumer subclass}``.
    """

    consumers: dict[str, Any] = {}

    def _forward(self, consumer: Any, stream: str, message: Any, **kwargs: Any) -> None:
        consumer(message, multiplexer=WebsocketMultiplexer(stream, message.reply_channel), **kwargs)

    def connect(self, message: Any, **kwargs: Any) -> None:
        message.reply_channel.send({"accept": True})
        for stream, consumer in self.consumers.items():
            self._forward(consumer, stream, message, **kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or "stream" not in content or "payload" not in content:
            raise ValueError("Multiplexed frame must be a JSON object with 'stream' and 'payload'")
        stream, payload = content["stream"], content["payload"]
        consumer = self.consumers.get(stream)
        if consumer is None:
            raise ValueError(f"Multiplexed frame for unknown stream {stream!r}")
        inner = dict(self.message.content)
        inner["text"] = json.dumps(payload)
        inner["bytes"] = None
        message = Message(inner, self.message.channel.name, self.message.channel_layer)
        for attr in ("channel_session", "http_session", "user"):
            if hasattr(self.message, attr):
                setattr(message, attr, getattr(self.message, attr))
        self._forward(consumer, stream, message, **kwargs)

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        for stream, consumer in self.consumers.items():
            self._forward(consumer, stream, message, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise SendNotAvailableOnDemultiplexer("Use the multiplexer kwarg of the sub-consumer to send")

    @classmethod
    def group_send(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise SendNotAvailableOnDemultiplexer("Use WebsocketMultiplexer.group_send(name, stream, payload)")
