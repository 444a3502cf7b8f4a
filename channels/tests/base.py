"""ChannelTestCase, Client and apply_routes (Channels 1.x ``channels.tests``).

``ChannelTestCase`` swaps every alias in ``test_channel_aliases`` for a fresh in-memory
layer with the same routing for the duration of each test. ``Client`` sends messages
with its own reply channel and runs the routed consumer in this thread, between the
consumer signals, exactly as a worker would (held sends are flushed when it returns).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from typing import Any, Callable, Iterator

from django.db import close_old_connections
from django.test import TestCase

from .. import DEFAULT_CHANNEL_LAYER
from ..asgi import ChannelLayerWrapper, channel_layers
from ..layers.inmemory import InMemoryChannelLayer
from ..message import Message
from ..routing import Router, include
from ..signals import consumer_finished, consumer_started
from shmlayer.contract import random_suffix

__all__ = ["ChannelTestCase", "ChannelTestCaseMixin", "Client", "apply_routes"]


@contextlib.contextmanager
def consumer_signals(sender: Any) -> Iterator[None]:
    """Send consumer_started / consumer_finished around a block, as a worker does.

    Database connections are not closed by the signals here: a test case runs inside a
    transaction that closing would break (Django's test client does the same).
    """
    consumer_started.disconnect(close_old_connections, dispatch_uid="channels.close_old_connections.started")
    consumer_finished.disconnect(close_old_connections, dispatch_uid="channels.close_old_connections.finished")
    try:
        consumer_started.send(sender=sender, environ={})
        try:
            yield
        finally:
            consumer_finished.send(sender=sender)
    finally:
        consumer_started.connect(close_old_connections, dispatch_uid="channels.close_old_connections.started")
        consumer_finished.connect(close_old_connections, dispatch_uid="channels.close_old_connections.finished")


def _receive(alias: str, channel: str) -> Message | None:
    layer = channel_layers[alias]
    received, content = layer.receive([channel], block=False)
    if received is None:
        return None
    return Message(content, received, layer)


class ChannelTestCaseMixin:
    """Swap in in-memory layers (keeping each alias's routing) around every test.

    Attributes:
        test_channel_aliases: the aliases to swap (default ``["default"]``).
    """

    test_channel_aliases = [DEFAULT_CHANNEL_LAYER]

    def _pre_setup(self) -> None:
        super()._pre_setup()  # type: ignore[misc]
        self._old_layers = {}
        for alias in self.test_channel_aliases:
            # Read ROUTING from settings: building the configured layer (say, an shm
            # segment) just to learn its routing would be a side effect of testing.
            routing = channel_layers.configs.get(alias, {}).get("ROUTING", [])
            fresh = ChannelLayerWrapper(InMemoryChannelLayer(), alias, routing)
            self._old_layers[alias] = channel_layers.set(alias, fresh)

    def _post_teardown(self) -> None:
        for alias, old in self._old_layers.items():
            channel_layers.set(alias, old)
        del self._old_layers
        super()._post_teardown()  # type: ignore[misc]

    def get_next_message(self, channel: str, alias: str = DEFAULT_CHANNEL_LAYER, require: bool = False) -> Message | None:
        """The next message waiting on ``channel``, or None (AssertionError if ``require``)."""
        message = _receive(alias, channel)
        if message is None and require:
            raise AssertionError(f"Expected a message on channel {channel}, got none")
        return message


class ChannelTestCase(ChannelTestCaseMixin, TestCase):
    """A Django TestCase with in-memory channel layers."""


class Client:
    """Sends messages with its own reply channel and consumes them in-process.

    Args:
        alias: the channel layer alias to use.
    """

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER) -> None:
        self.alias = alias
        self.reply_channel = f"test.reply.{random_suffix(10)}"

    @property
    def channel_layer(self) -> ChannelLayerWrapper:
        return channel_layers[self.alias]

    def get_next_message(self, channel: str) -> Message | None:
        """The next message on ``channel`` or None."""
        return _receive(self.alias, channel)

    def get_consumer_by_channel(self, channel: str) -> Any:
        """The consumer routed for a bare message on ``channel`` (or None)."""
        match = self.channel_layer.router.match(Message({"text": ""}, channel, self.channel_layer))
        return match[0] if match else None

    def send(self, to: str, content: dict[str, Any] | None = None) -> None:
        """Send ``content`` (with this client's reply_channel) to channel ``to``."""
        content = copy.deepcopy(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        self.channel_layer.send(to, content)

    def consume(self, channel: str, fail_on_none: bool = True) -> Any:
        """Take the next message on ``channel`` and run its consumer here.

        Raises:
            AssertionError: no message, or nothing routed for it (with ``fail_on_none``).
        """
        message = self.get_next_message(channel)
        if message is None:
            if fail_on_none:
                raise AssertionError(f"No message to consume on {channel}")
            return None
        match = self.channel_layer.router.match(message)
        if match is None:
            if fail_on_none:
                raise AssertionError(f"Can't find a consumer for message {message.content} on {channel}")
            return None
        consumer, kwargs = match
        with consumer_signals(type(self)):
            return consumer(message, **kwargs)

    def send_and_consume(self, channel: str, content: dict[str, Any] | None = None, fail_on_none: bool = True) -> Any:
        """``send`` then ``consume`` on ``channel``."""
        self.send(channel, content)
        return self.consume(channel, fail_on_none=fail_on_none)

    def receive(self) -> dict[str, Any] | None:
        """The content of the next message on this client's reply channel, or None."""
        message = self.get_next_message(self.reply_channel)
        return message.content if message is not None else None


class apply_routes:  # noqa: N801 - Channels 1.x name
    """Use ``routes`` instead of the configured routing (context manager or decorator).

    Args:
        routes: a list of entries, a single entry, or a list of lists (each included).
        aliases: the layer aliases to change.
    """

    def __init__(self, routes: Any, aliases: list[str] | None = None) -> None:
        self.routes = routes
        self.aliases = aliases or [DEFAULT_CHANNEL_LAYER]
        self._saved: dict[str, tuple[Any, Any]] = {}

    def _routing(self) -> list[Any]:
        if isinstance(self.routes, (list, tuple)):
            if self.routes and isinstance(self.routes[0], (list, tuple)):
                return [include(routes) for routes in self.routes]
            return list(self.routes)
        return [self.routes]

    def __enter__(self) -> apply_routes:
        routing = self._routing()
        for alias in self.aliases:
            wrapper = channel_layers[alias]
            self._saved[alias] = (wrapper.routing, wrapper._router)
            wrapper.routing = routing
            wrapper._router = Router(routing)
        return self

    def __exit__(self, *exc: Any) -> None:
        for alias, (routing, router) in self._saved.items():
            wrapper = channel_layers[alias]
            wrapper.routing, wrapper._router = routing, router
        self._saved = {}

    def __call__(self, test: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(test)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with self:
                return test(*args, **kwargs)

        return inner
