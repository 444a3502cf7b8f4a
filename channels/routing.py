"""Channel routing: which consumer runs for which message (Channels 1.x semantics).

A routing is a list of entries, tried in order; the first that matches wins:

- ``route(channel_or_channels, consumer, **filters)``: the message arrived on one of the
  channels and every filter regex ``re.match``-es the message's value for that key
  (``path=r"^/chat/(?P<room>\\w+)/$"``). Named groups become consumer kwargs; unnamed
  groups are an error at load time (they would have no name to be passed as).
- ``route_class(ConsumerClass, **filters)``: the same for a class-based consumer, whose
  channels come from ``ConsumerClass.channel_names()``.
- ``include(routing_or_dotted_path, **filters)``: if its filters match, the matched prefix
  of each filtered value is chopped off before the included entries see the message
  (so ``include(chat, path=r"^/chat")`` lets ``chat`` match ``r"^/(?P<room>\\w+)/$"``).
  Includes nest. The consumer itself gets the original, unchopped message.

Filter values may be str or compiled patterns; message values that are bytes are decoded
as UTF-8 (a value that is neither str nor bytes never matches).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from django.core.exceptions import ImproperlyConfigured

from .utils import import_by_path, name_that_thing

__all__ = [
    "Include",
    "Route",
    "RouteClass",
    "Router",
    "connect_consumer",
    "include",
    "null_consumer",
    "route",
    "route_class",
]



def _compile_filters(filters: dict[str, Any], owner: str) -> dict[str, re.Pattern[str]]:
    compiled = {}
    for key, pattern in filters.items():
        if isinstance(pattern, bytes):
            pattern = pattern.decode("utf-8")
        if isinstance(pattern, str):
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ImproperlyConfigured(f"{owner}: filter {key}={pattern!r} is not a valid regex: {exc}") from exc
        elif isinstance(pattern, re.Pattern):
            regex = pattern
        else:
            raise ImproperlyConfigured(f"{owner}: filter {key}= must be a regex str, not {type(pattern).__name__}")
        if regex.groups != len(regex.groupindex):
            raise ImproperlyConfigured(
                f"{owner}: filter {key}={regex.pattern!r} has an unnamed group; only named groups "
                "(?P<name>...) are allowed, since matches are passed to the consumer as keyword "
                "arguments (use (?:...) for grouping)"
            )
        compiled[key] = regex
    return compiled


def _match_value(regex: re.Pattern[str], content: dict[str, Any], key: str) -> re.Match[str] | None:
    value = content.get(key)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    return regex.match(value)


def _resolve_consumer(consumer: Any, owner: str) -> Callable[..., Any]:
    if isinstance(consumer, str):
        consumer = import_by_path(consumer, "consumer")
    if not callable(consumer):
        raise ImproperlyConfigured(f"{owner}: consumer {consumer!r} is not callable")
    return consumer


class Route:
    """Route messages on ``channels`` that pass every filter to ``consumer``.

    Args:
        channels: a channel name or a list of them.
        consumer: a callable ``consumer(message, **kwargs)`` or its dotted path.
        **filters: message key -> regex (str or compiled); named groups become kwargs.

    Raises:
        ImproperlyConfigured: bad channel names, unimportable or uncallable consumer,
            invalid regex or an unnamed group.
    """

    def __init__(self, channels: str | Iterable[str], consumer: Any, **filters: Any) -> None:
        if isinstance(channels, (str, bytes)):
            channels = [channels]
        names = [c.decode("ascii") if isinstance(c, bytes) else c for c in channels]
        if not names or not all(isinstance(c, str) and c for c in names):
            raise ImproperlyConfigured(f"route(): channels must be a non-empty str or list of str, not {channels!r}")
        self.channels = names
        self._channel_set = frozenset(names)
        self.consumer = _resolve_consumer(consumer, f"route({names[0]!r})")
        self.filters = _compile_filters(filters, f"route({names[0]!r}, {name_that_thing(self.consumer)})")

    def match(self, message: Any) -> Any:
        """``(consumer, kwargs)`` if ``message`` is routed here, else None."""
        if message.channel.name not in self._channel_set:
            return None
        kwargs: dict[str, Any] = {}
        for key, regex in self.filters.items():
            found = _match_value(regex, message.content, key)
            if found is None:
                return None
            kwargs.update(found.groupdict())
        return self.consumer, kwargs

    def channel_names(self) -> set[str]:
        """The channels this route listens on."""
        return set(self.channels)

    def __str__(self) -> str:
        filters = ", ".join(f"{k}={v.pattern}" for k, v in self.filters.items())
        return f"{'/'.join(self.channels)} {f'({filters}) ' if filters else ''}-> {name_that_thing(self.consumer)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"


class RouteClass(Route):
    """Route to a class-based consumer; its channels come from ``channel_names()``.

    Raises:
        ImproperlyConfigured: the class has no callable ``channel_names``.
    """

    def __init__(self, consumer: Any, **filters: Any) -> None:
        consumer = _resolve_consumer(consumer, "route_class()")
        channel_names = getattr(consumer, "channel_names", None)
        if not callable(channel_names):
            raise ImproperlyConfigured(
                f"route_class(): {name_that_thing(consumer)} has no channel_names() classmethod"
            )
        super().__init__(sorted(channel_names()), consumer, **filters)


class Include:
    """Route through another routing list after matching (and chopping) prefixes.

    Args:
        routing: a list of entries, a dict ``{channel: consumer}``, or a dotted path to one.
        **filters: message key -> regex; the matched part is removed for the included
            entries, named groups become kwargs.
    """

    def __init__(self, routing: Any, **filters: Any) -> None:
        self.routing = resolve_routing(routing)
        self.prefixes = _compile_filters(filters, f"include({routing if isinstance(routing, str) else '...'})")

    def match(self, message: Any) -> Any:
        """``(consumer, kwargs)`` from the first included entry that matches, else None."""
        kwargs: dict[str, Any] = {}
        if self.prefixes:
            content = dict(message.content)
            for key, regex in self.prefixes.items():
                found = _match_value(regex, content, key)
                if found is None:
                    return None
                kwargs.update(found.groupdict())
                content[key] = found.string[found.end():]
            message = _MatchView(message.channel, content)
        for entry in self.routing:
            result = entry.match(message)
            if result is not None:
                consumer, inner_kwargs = result
                return consumer, {**kwargs, **inner_kwargs}
        return None

    def channel_names(self) -> set[str]:
        """Every channel any included entry listens on."""
        names: set[str] = set()
        for entry in self.routing:
            names.update(entry.channel_names())
        return names


class _MatchView:
    """What Include hands to included entries: the channel plus chopped content."""

    __slots__ = ("channel", "content")

    def __init__(self, channel: Any, content: dict[str, Any]) -> None:
        self.channel = channel
        self.content = content


def resolve_routing(routing: Any) -> list[Any]:
    """Turn a ROUTING value into a list of checked entries.

    Args:
        routing: list/tuple of entries, ``{channel: consumer}`` dict, dotted path to
            either, or None (empty).

    Raises:
        ImproperlyConfigured: the path cannot be imported, or an entry is not a route.
    """
    if routing is None:
        return []
    source = routing if isinstance(routing, str) else None
    if isinstance(routing, str):
        routing = import_by_path(routing, "channel routing")
    if isinstance(routing, dict):
        routing = [Route(channel, consumer) for channel, consumer in routing.items()]
    if not isinstance(routing, (list, tuple)):
        where = f" ({source})" if source else ""
        raise ImproperlyConfigured(
            f"Channel routing{where} must be a list of route()/route_class()/include(), "
            f"not {type(routing).__name__}"
        )
    for index, entry in enumerate(routing):
        if not (callable(getattr(entry, "match", None)) and callable(getattr(entry, "channel_names", None))):
            where = f" in {source}" if source else ""
            raise ImproperlyConfigured(
                f"Routing entry {index}{where} is {entry!r}, not a route: use route(channel, consumer), "
                "route_class(ConsumerClass) or include(other_routing)"
            )
    return list(routing)


class Router:
    """The routing of one layer: ``match(message)`` and the set of routed channels.

    Args:
        routing: anything :func:`resolve_routing` accepts.

    Raises:
        ImproperlyConfigured: see :func:`resolve_routing` and :class:`Route`.
    """

    def __init__(self, routing: Any) -> None:
        self.root = Include(routing)
        self.channels = self.root.channel_names()

    def add_route(self, entry: Any) -> None:
        """Append an entry at the end (lowest priority)."""
        self.root.routing.extend(resolve_routing([entry]))
        self.channels = self.root.channel_names()

    def match(self, message: Any) -> Any:
        """``(consumer, kwargs)`` for ``message``, or None when nothing is routed."""
        return self.root.match(message)

    def check_default(self, http_consumer: Any = None) -> None:
        """Append Channels' default consumers below the user's routes.

        ``http.request`` -> ``channels.handler.ViewConsumer()`` (Django views) or
        ``http_consumer``; ``websocket.connect`` -> accept; ``websocket.receive`` and
        ``websocket.disconnect`` -> nothing. User routes that match come first; messages
        they do not match (another path, another method) fall through to these.
        """
        if http_consumer is None:
            from .handler import ViewConsumer  # imported late: it pulls in Django's handler

            http_consumer = ViewConsumer()
        self.add_route(Route("http.request", http_consumer))
        self.add_route(Route("websocket.connect", connect_consumer))
        self.add_route(Route(["websocket.receive", "websocket.disconnect"], null_consumer))


def null_consumer(*args: Any, **kwargs: Any) -> None:
    """The default consumer that does nothing (websocket.receive / disconnect)."""


def connect_consumer(message: Any, *args: Any, **kwargs: Any) -> None:
    """The default websocket.connect consumer: accept the socket."""
    message.reply_channel.send({"accept": True})


# Lower-case names, as in urls.py.
route = Route
route_class = RouteClass
include = Include
