"""``Channel`` and ``Group``: the sending half of the Channels 1.x API.

Inside a consumer (between the worker's ``consumer_started`` and ``consumer_finished``
signals) sends are *held* and go out, in the order they were made, when the consumer
returns (see :mod:`channels.message`). That way a consumer that fails half-way sends
nothing it did not mean to, and replies never overtake the session save that precedes
them. Outside a consumer (views, the shell, management commands, cron jobs) sends go at
once. ``immediately=True`` always sends at once.
"""

from __future__ import annotations

from typing import Any

from shmlayer.contract import validate_channel_name, validate_group_name, validate_message

from . import DEFAULT_CHANNEL_LAYER

__all__ = ["Channel", "Group"]


class _Sender:
    """Shared layer lookup of Channel and Group: by alias, resolved on first use."""

    def __init__(self, name: Any, alias: str = DEFAULT_CHANNEL_LAYER, channel_layer: Any = None) -> None:
        if isinstance(name, bytes):
            name = name.decode("ascii")
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__} name must be a str, not {type(name).__name__}")
        self.name = name
        self.alias = alias
        self._channel_layer = channel_layer

    @property
    def channel_layer(self) -> Any:
        """The layer this sends through (a ChannelLayerWrapper when found by alias)."""
        if self._channel_layer is None:
            from .asgi import channel_layers

            self._channel_layer = channel_layers[self.alias]
        return self._channel_layer

    def _hold(self, content: Any) -> bool:
        from .message import pending_message_store

        return pending_message_store.append(self, content)

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Channel(_Sender):
    """A named channel on a layer.

    Args:
        name: channel name (``"chat-messages"``, a reply channel, ...).
        alias: CHANNEL_LAYERS alias used when ``channel_layer`` is not given.
        channel_layer: a layer (or wrapper) to use instead of looking up ``alias``.
    """

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` on this channel (held until the consumer returns, see module doc).

        Args:
            content: the message, a dict of ASGI-serialisable values.
            immediately: send now even inside a consumer.

        Raises:
            TypeError: content is not a dict of allowed values, or the name is invalid.
            ChannelFull: sending now and the channel is full.
            MessageTooLarge: sending now and the message is over the layer's limit.
        """
        if not isinstance(content, dict):
            raise TypeError("You can only send dicts as content on channels.")
        if immediately or not self._hold(content):
            self.channel_layer.send(self.name, content)

    def _check(self, content: dict[str, Any]) -> None:
        # Held sends are checked when made, so a bad name or value fails in the
        # consumer's own line rather than at flush time.
        validate_channel_name(self.name)
        validate_message(content)

    def _deliver(self, content: dict[str, Any]) -> None:
        self.channel_layer.send(self.name, content)


class Group(_Sender):
    """A named group of channels on a layer.

    Args:
        name: group name (ASCII letters, digits, ``-_.``).
        alias: CHANNEL_LAYERS alias used when ``channel_layer`` is not given.
        channel_layer: a layer (or wrapper) to use instead of looking up ``alias``.
    """

    def add(self, channel: Channel | str) -> None:
        """Add a channel (a :class:`Channel` or its name) to the group; idempotent.

        Group membership changes take effect at once, even inside a consumer.
        """
        name = channel.name if isinstance(channel, Channel) else channel
        self.channel_layer.group_add(self.name, name)

    def discard(self, channel: Channel | str) -> None:
        """Remove a channel from the group if it is a member."""
        name = channel.name if isinstance(channel, Channel) else channel
        self.channel_layer.group_discard(self.name, name)

    def channel_names(self) -> list[str]:
        """The names of the group's current members."""
        return list(self.channel_layer.group_channels(self.name))

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send one copy of ``content`` to every member (held inside a consumer).

        Full members are skipped by the layer, never raised.

        Raises:
            TypeError: content is not a dict of allowed values, or the name is invalid.
        """
        if not isinstance(content, dict):
            raise TypeError("You can only send dicts as content on channels.")
        if immediately or not self._hold(content):
            self.channel_layer.send_group(self.name, content)

    def _check(self, content: dict[str, Any]) -> None:
        validate_group_name(self.name)
        validate_message(content)

    def _deliver(self, content: dict[str, Any]) -> None:
        self.channel_layer.send_group(self.name, content)
