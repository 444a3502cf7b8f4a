"""Helpers of the channels tests: a real in-memory layer and the worker's dispatch steps.

``dispatch`` does what a worker does for one message (Channels 1.x Worker.run): route it,
send ``consumer_started``, run the consumer, send ``consumer_finished`` (which flushes the
held sends) even if the consumer raised.
"""

from __future__ import annotations

from typing import Any

from channels.asgi import ChannelLayerWrapper
from channels.layers.inmemory import InMemoryChannelLayer
from channels.message import Message
from channels.signals import consumer_finished, consumer_started


def make_wrapper(routing: Any = None, **layer_kwargs: Any) -> ChannelLayerWrapper:
    """A real in-memory layer wrapped with ``routing``."""
    return ChannelLayerWrapper(InMemoryChannelLayer(**layer_kwargs), "default", routing or [])


def run_consumer(consumer: Any, message: Message, **kwargs: Any) -> Any:
    """Run ``consumer(message, **kwargs)`` between the two consumer signals."""
    consumer_started.send(sender=run_consumer, environ={})
    try:
        return consumer(message, **kwargs)
    finally:
        consumer_finished.send(sender=run_consumer)


def dispatch(wrapper: ChannelLayerWrapper, channel: str, content: dict[str, Any]) -> Message:
    """Route ``content`` (as if received on ``channel``) and run its consumer."""
    message = Message(content, channel, wrapper)
    match = wrapper.router.match(message)
    assert match is not None, f"nothing routed for {channel} {content}"
    consumer, kwargs = match
    run_consumer(consumer, message, **kwargs)
    return message


def pump(wrapper: ChannelLayerWrapper, channels: list[str], limit: int = 1000) -> int:
    """Dispatch whatever waits on ``channels`` until they are empty; returns the count."""
    done = 0
    while done < limit:
        channel, content = wrapper.channel_layer.receive(channels, block=False)
        if channel is None:
            return done
        dispatch(wrapper, channel, content)
        done += 1
    raise AssertionError(f"still messages after {limit} dispatches")


def drain(layer: Any, channel: str) -> list[dict[str, Any]]:
    """Every message waiting on ``channel`` (a process channel's prefix gets them all)."""
    out = []
    while True:
        name, content = layer.receive([channel], block=False)
        if name is None:
            return out
        out.append(content)


def ws_content(reply: str, path: str = "/", order: int = 0, text: str | None = None, **extra: Any) -> dict[str, Any]:
    """A websocket.* message as the interface sends it."""
    content: dict[str, Any] = {"reply_channel": reply, "path": path, "order": order}
    if order == 0:
        content.update({"headers": [], "query_string": b"", "client": ["127.0.0.1", 5000], "server": ["127.0.0.1", 80]})
    if text is not None:
        content.update({"text": text, "bytes": None})
    content.update(extra)
    return content
