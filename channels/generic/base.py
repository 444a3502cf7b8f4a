"""``BaseConsumer``: a class-based consumer, one instance per message.

Route it with ``route_class(MyConsumer, path=...)`` or ``MyConsumer.as_route(path=...)``.
``method_mapping`` maps channel names to method names; the instance is created with the
message and the routing kwargs, and dispatches at once (so the class itself is the
consumer callable).
"""

from __future__ import annotations

from typing import Any, Callable

from ..auth import channel_session_user
from ..routing import route_class
from ..sessions import channel_session

__all__ = ["BaseConsumer"]


class BaseConsumer:
    """Dispatch a message to the method ``method_mapping[message.channel.name]``.

    Attributes:
        method_mapping: ``{channel name: method name}``; also the routed channels.
        channel_session: wrap handlers in ``@channel_session``.
        channel_session_user: wrap handlers in ``@channel_session_user``.
    """

    method_mapping: dict[str, str] = {}
    channel_session = False
    channel_session_user = False

    def __init__(self, message: Any, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        self.dispatch(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        """The channels this consumer listens on (the keys of ``method_mapping``)."""
        return set(cls.method_mapping)

    @classmethod
    def as_route(cls, attrs: dict[str, Any] | None = None, **filters: Any) -> Any:
        """A ``route_class`` for this consumer; ``attrs`` makes a subclass with them set."""
        consumer = type(cls.__name__, (cls,), attrs) if attrs else cls
        return route_class(consumer, **filters)

    def get_handler(self, message: Any, **kwargs: Any) -> Callable[..., Any]:
        """The bound method for the message's channel, wrapped in session decorators."""
        handler = getattr(self, self.method_mapping[message.channel.name])
        if self.channel_session_user:
            return channel_session_user(handler)
        if self.channel_session:
            return channel_session(handler)
        return handler

    def dispatch(self, message: Any, **kwargs: Any) -> Any:
        """Call the handler of ``message`` with the routing kwargs."""
        return self.get_handler(message, **kwargs)(message, **kwargs)
