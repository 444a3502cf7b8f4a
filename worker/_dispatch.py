"""Run one received message through routing and its consumer (Channels 1.x semantics).

:func:`dispatch` is the whole life of one message inside a worker:

1. wrap the content in a ``channels.message.Message`` and ``router.match`` it;
2. send ``consumer_started`` (the held-send store opens; old DB connections are closed);
3. call ``consumer(message, **kwargs)``;
4. turn the consumer's way of ending into an action:

   =========================  ===============================================================
   returned                   nothing more
   ``DenyConnection``         reply ``{"close": True}`` (``websocket.connect`` only; anywhere
                              else it is a programming error, logged)
   ``ChannelSocketException`` ``exc.run(message)`` (e.g. close with a code)
   ``ConsumeLater``           re-send the content on its channel with ``__retries__ + 1``,
                              dropped with a warning past ``message_retries``
   anything else              logged with its traceback; the worker goes on
   =========================  ===============================================================

5. always send ``consumer_finished`` (held sends are flushed, in order; DB connections
   closed as Django does after a request).

Nothing a consumer does can end the worker: every failure is logged and contained here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from channels.exceptions import ChannelSocketException, ConsumeLater, DenyConnection
from channels.handler import send_reply
from channels.signals import consumer_finished, consumer_started
from channels.utils import name_that_thing

__all__ = ["DEFAULT_MESSAGE_RETRIES", "dispatch"]

logger = logging.getLogger("django.channels.worker")

#: How many times a message may be put back by ConsumeLater (Channels 1.x: 10).
DEFAULT_MESSAGE_RETRIES = 10
#: Seconds a ConsumeLater message may wait for room on its full channel before it is dropped.
REQUEUE_TIMEOUT = 0.5

def _retries(content: dict[str, Any]) -> int:
    """The ConsumeLater count of a message (0 when absent or not an int)."""
    value = content.get("__retries__", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def raw_layer(layer_wrapper: Any) -> Any:
    """The layer object under a ``ChannelLayerWrapper`` (a bare layer is returned as is)."""
    return getattr(layer_wrapper, "channel_layer", layer_wrapper)


def _requeue(layer: Any, channel: str, content: dict[str, Any], message_retries: int) -> None:
    """ConsumeLater: put ``content`` back on ``channel`` with a bumped ``__retries__``."""
    retries = _retries(content) + 1
    if retries > message_retries:
        logger.warning(
            "Exceeded %d retries for a message on %s; dropped: %s", message_retries, channel, repr(content)[:100]
        )
        return
    content["__retries__"] = retries
    if not send_reply(layer, channel, content, REQUEUE_TIMEOUT):
        logger.warning("Could not put a ConsumeLater message back on %s: the channel stayed full; dropped", channel)


def _deny(message: Any, channel: str, consumer_name: str) -> None:
    if channel != "websocket.connect":
        logger.error(
            "Consumer %s raised DenyConnection for a message on %s; only websocket.connect consumers may deny",
            consumer_name, channel,
        )
        return
    if message.reply_channel is None:
        logger.error("DenyConnection on a websocket.connect message without a reply_channel")
        return
    message.reply_channel.send({"close": True})


def dispatch(
    layer_wrapper: Any,
    channel: str,
    content: dict[str, Any],
    *,
    sender: Any,
    message_retries: int = DEFAULT_MESSAGE_RETRIES,
    callback: Callable[[str, Any], None] | None = None,
    log_each: bool = False,
) -> bool:
    """Route and consume one message; never raises for anything a consumer does.

    Args:
        layer_wrapper: the ``ChannelLayerWrapper`` (its ``router`` routes the message).
        channel: the channel the message came from (full name).
        content: the message content as received.
        sender: the ``sender`` of the consumer signals (the Worker class, as in 1.x).
        message_retries: ConsumeLater limit.
        callback: Channels 1.x worker callback, ``callback(channel, message)``, called
            before the consumer.
        log_each: log one INFO line per message (channel, consumer, duration in ms).

    Returns:
        True when a consumer ran (whatever its outcome), False when nothing matched.
    """
    from channels.message import Message

    started = time.perf_counter()
    try:
        message = Message(content, channel, layer_wrapper)
    except (TypeError, ValueError) as exc:
        logger.error("Dropped a malformed message on %s: %s", channel, exc)
        return False
    if _retries(content) == message_retries:
        # Channels 1.x marked the last chance so decorators can warn; not public API.
        message.__doomed__ = True
    try:
        match = layer_wrapper.router.match(message)
    except Exception:
        logger.exception("Routing failed for a message on %s", channel)
        return False
    if match is None:
        logger.error("Could not find a match for a message on %s! Check your routing.", channel)
        return False
    consumer, kwargs = match
    consumer_name = name_that_thing(consumer)
    if callback is not None:
        try:
            callback(channel, message)
        except Exception:
            logger.exception("Worker callback failed for a message on %s", channel)
    outcome = "ok"
    try:
        consumer_started.send(sender=sender, environ={})
        consumer(message, **kwargs)
    except DenyConnection:
        outcome = "denied"
        _guard(_deny, message, channel, consumer_name)
    except ChannelSocketException as exc:
        outcome = type(exc).__name__
        _guard(exc.run, message)
    except ConsumeLater:
        outcome = "consume later"
        _guard(_requeue, raw_layer(layer_wrapper), channel, content, message_retries)
    except Exception:
        outcome = "error"
        logger.exception("Error processing a message on %s with consumer %s:", channel, consumer_name)
    finally:
        try:
            consumer_finished.send(sender=sender)
        except Exception:
            outcome = "error"
            logger.exception("Error after consumer %s finished (sending held messages) on %s", consumer_name, channel)
    if log_each:
        took = (time.perf_counter() - started) * 1000
        logger.info("%s -> %s %.1fms%s", channel, consumer_name, took, "" if outcome == "ok" else f" ({outcome})")
    return True


def _guard(action: Callable[..., Any], *args: Any) -> None:
    """Run a follow-up action of a consumer's exception; its own failure is only logged."""
    try:
        action(*args)
    except Exception:
        logger.exception("Error while acting on a consumer's exception (%s)", name_that_thing(action))
