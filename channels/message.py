"""``Message`` (what a consumer receives) and the store of held sends.

Held sends (theory of operation)
--------------------------------
The worker sends ``consumer_started`` before a consumer and ``consumer_finished`` after
it (returned or raised). ``pending_message_store`` listens to both:

- ``consumer_started`` -> :meth:`PendingMessageStore.prepare`: this thread now holds sends;
- ``Channel.send`` / ``Group.send`` in that thread append ``(sender, copy of content)``;
- ``consumer_finished`` -> :meth:`PendingMessageStore.send_and_flush`: the list is taken
  (so a failure cannot leak into the next consumer) and sent in FIFO order.

FIFO matters: ``enforce_ordering`` *defers* (:meth:`PendingMessageStore.defer`) the step
that marks message k+1 as next and requeues it, so it runs only after the replies of
message k are on their channels: no worker can run k+1 earlier.

A held send that meets ``ChannelFull`` is retried with exponential backoff (5 ms doubling
to 250 ms) until :attr:`PendingMessageStore.flush_timeout` (5 s, shared by the whole
flush) has passed; the rest of the list is still attempted, then
:class:`channels.exceptions.HeldSendTimeout` names the channels that lost a message and
what to do about it. Threads that never saw ``consumer_started`` (views, shell, cron)
send at once.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any, Callable, Iterator

from shmlayer.contract import ChannelFull

from ._retry import retry_while_full
from .channel import Channel
from .exceptions import HeldSendTimeout
from .signals import consumer_finished, consumer_started

__all__ = ["Message", "PendingMessageStore", "pending_message_store"]

logger = logging.getLogger("django.channels.message")


class Message:
    """A message a consumer is handed.

    Args:
        content: the message dict.
        channel_name: the channel it arrived on.
        channel_layer: the layer (or ChannelLayerWrapper) it came from.

    Attributes:
        content: the dict; ``message["text"]`` and ``message.get("text")`` read it.
        channel: :class:`Channel` it arrived on.
        reply_channel: :class:`Channel` of ``content["reply_channel"]``, or None.
        channel_layer: the layer it came from.
    """

    def __init__(self, content: dict[str, Any], channel_name: str, channel_layer: Any) -> None:
        self.content = content
        self.channel_layer = channel_layer
        self.channel = Channel(channel_name, channel_layer=channel_layer)
        reply = content.get("reply_channel")
        self.reply_channel = Channel(reply, channel_layer=channel_layer) if reply else None

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.content[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def __iter__(self) -> Iterator[str]:
        return iter(self.content)

    def __len__(self) -> int:
        return len(self.content)

    def keys(self) -> Any:
        return self.content.keys()

    def values(self) -> Any:
        return self.content.values()

    def items(self) -> Any:
        return self.content.items()

    def get(self, key: str, default: Any = None) -> Any:
        """``content.get(key, default)``."""
        return self.content.get(key, default)

    def copy(self) -> Message:
        """A new Message with a deep copy of the content (same channel and layer)."""
        return type(self)(copy.deepcopy(self.content), self.channel.name, self.channel_layer)

    def __repr__(self) -> str:
        return f"<Message on {self.channel.name!r} keys={sorted(self.content)}>"


class PendingMessageStore:
    """Per-thread list of held sends (see the module docstring).

    Attributes:
        flush_timeout: seconds a flush keeps retrying full channels.
    """

    flush_timeout = 5.0
    _first_backoff = 0.005
    _max_backoff = 0.25

    def __init__(self) -> None:
        self._local = threading.local()

    def prepare(self, **kwargs: Any) -> None:
        """Start holding sends in this thread (receiver of ``consumer_started``)."""
        self._local.messages = []

    @property
    def holding(self) -> bool:
        """True between ``prepare`` and ``send_and_flush`` in this thread."""
        return getattr(self._local, "messages", None) is not None

    def append(self, sender: Any, content: dict[str, Any]) -> bool:
        """Hold ``content`` for ``sender`` if this thread is inside a consumer.

        Returns:
            False when not holding (the caller sends at once), True when held.

        Raises:
            TypeError: bad name or content (checked now, not at flush).
        """
        messages = getattr(self._local, "messages", None)
        if messages is None:
            return False
        sender._check(content)
        # A snapshot: the consumer may reuse or mutate its dict after send().
        messages.append((sender, copy.deepcopy(content)))
        return True

    def defer(self, action: Callable[[], Any]) -> bool:
        """Run ``action()`` at flush time, after every send held before it (FIFO).

        Returns:
            False when not holding (the caller runs it now), True when deferred.
        """
        messages = getattr(self._local, "messages", None)
        if messages is None:
            return False
        messages.append((None, action))
        return True

    def discard(self) -> None:
        """Drop every held send of this thread and stop holding (e.g. on a worker abort)."""
        self._local.messages = None

    def send_and_flush(self, **kwargs: Any) -> None:
        """Send every held message in order, then stop holding (``consumer_finished``).

        Raises:
            HeldSendTimeout: some channel stayed full past ``flush_timeout``.
            Exception: the first other error a send raised (e.g. MessageTooLarge),
                after the remaining messages were attempted.
        """
        messages = getattr(self._local, "messages", None)
        self._local.messages = None
        if not messages:
            return
        deadline = time.monotonic() + self.flush_timeout
        failed: list[str] = []
        first_error: BaseException | None = None
        for sender, content in messages:
            try:
                if sender is None:
                    content()  # a deferred action (see defer)
                elif not self._deliver_with_retry(sender, content, deadline):
                    failed.append(sender.name)
            except Exception as exc:  # keep flushing the rest; report after
                logger.error("Held send to %s failed: %s", sender or "a deferred action", exc)
                first_error = first_error or exc
        if failed:
            names = ", ".join(sorted(set(failed)))
            raise HeldSendTimeout(
                f"{len(failed)} held message(s) dropped: channel(s) {names} stayed full for "
                f"{self.flush_timeout:g}s. Consumers are not keeping up: raise the capacity of "
                "these channels with CHANNEL_LAYERS[...]['CONFIG']['channel_capacity'], or run "
                "more workers.",
                failed,
            )
        if first_error is not None:
            raise first_error

    def _deliver_with_retry(self, sender: Any, content: dict[str, Any], deadline: float) -> bool:
        channel_full = getattr(sender.channel_layer, "ChannelFull", None) or ChannelFull
        return retry_while_full(lambda: sender._deliver(content), channel_full, deadline, self._first_backoff,
                                self._max_backoff)


#: The process-wide store; thread-local inside.
pending_message_store = PendingMessageStore()

consumer_started.connect(pending_message_store.prepare, dispatch_uid="channels.pending_message_store.prepare")
consumer_finished.connect(pending_message_store.send_and_flush, dispatch_uid="channels.pending_message_store.flush")
