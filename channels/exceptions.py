"""Exceptions of the Channels 1.x API.

Consumers raise the first group to ask the worker for something; the handler raises the
second group while reading a request; ``HeldSendTimeout`` reports held sends that could not
be delivered.
"""

from __future__ import annotations

from typing import Any

from shmlayer.contract import ChannelFull

__all__ = [
    "ChannelSocketException",
    "ConsumeLater",
    "DenyConnection",
    "HeldSendTimeout",
    "RequestAborted",
    "RequestTimeout",
    "ResponseLater",
    "SendNotAvailableOnDemultiplexer",
    "WebsocketCloseException",
]


class ConsumeLater(Exception):
    """Raised by a consumer: put the message back on its channel and run it later."""


class ResponseLater(Exception):
    """Raised by a view run through AsgiHandler: it will send the response itself later."""


class RequestTimeout(Exception):
    """The request body did not arrive in time (AsgiRequest answers 408)."""


class RequestAborted(Exception):
    """The client went away while its request body was being read."""


class DenyConnection(Exception):
    """Raised by a ``websocket.connect`` consumer: reject the handshake."""


class SendNotAvailableOnDemultiplexer(Exception):
    """``send()`` was called on a consumer that runs under a demultiplexer."""


class ChannelSocketException(Exception):
    """An exception that, when it escapes a consumer, acts on the message's socket.

    The worker catches it and calls :meth:`run` with the message. This base class closes
    the socket (``{"close": True}``); subclasses send something else.
    """

    def run(self, message: Any) -> None:
        """Act on ``message.reply_channel``; called by the worker.

        Args:
            message: the :class:`channels.message.Message` being consumed.
        """
        if message.reply_channel is not None:
            message.reply_channel.send({"close": True})


class WebsocketCloseException(ChannelSocketException):
    """Close the WebSocket with ``code`` (1000 or 3000–4999, RFC 6455 §7.4).

    Raises:
        ValueError: a code outside those ranges.
    """

    def __init__(self, code: int | None = None) -> None:
        if code is not None and code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"Invalid close code {code!r}: use 1000 or 3000-4999")
        super().__init__(code)
        self._code = code

    def run(self, message: Any) -> None:
        message.reply_channel.send({"close": self._code or True})


class HeldSendTimeout(ChannelFull):
    """Held sends of a consumer stayed blocked by full channels past the retry deadline.

    It subclasses the layers' ``ChannelFull`` so code that catches ``ChannelFull`` still
    catches it. ``failed`` lists the channel/group names whose messages were dropped.
    """

    def __init__(self, message: str, failed: list[str]) -> None:
        super().__init__(message)
        self.failed = failed
