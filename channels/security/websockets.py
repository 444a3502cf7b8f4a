"""Origin checks for ``websocket.connect`` consumers.

Browsers do not apply the same-origin policy to WebSockets, so any site can open a socket
to yours with the user's cookies (cross-site WebSocket hijacking). The ``Origin`` header
of the handshake (RFC 6455 §4.1, §10.2) says which page opened it; these decorators check
it before the consumer runs and reject the handshake (``{"accept": False}``, an HTTP 403)
when it is missing, malformed or not allowed.

::

    @allowed_hosts_only
    @channel_session_user_from_http
    def ws_add(message): ...

Subclass :class:`BaseOriginValidator` and override ``validate_origin(message, origin)``
for other rules.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from ..sessions import find_message

__all__ = ["AllowedHostsOnlyOriginValidator", "BaseOriginValidator", "allowed_hosts_only"]

logger = logging.getLogger("django.channels.security")


class BaseOriginValidator:
    """Decorator class: run the consumer only when ``validate_origin`` accepts the Origin.

    Args:
        func: the websocket.connect consumer to wrap.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        functools.update_wrapper(self, func)
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        if message.channel.name != "websocket.connect":
            raise ValueError(
                f"Origin validation applies to websocket.connect consumers only, not {message.channel.name!r}"
            )
        origin = self.get_origin(message)
        if origin is None or not self.validate_origin(message, origin):
            logger.info("Rejected WebSocket handshake on %s: origin %r not allowed", message.get("path"), origin)
            return self.deny(message)
        return self.func(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Used on a method: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    @staticmethod
    def get_origin(message: Any) -> str | None:
        """The ``Origin`` header of the handshake as str, or None if absent/undecodable."""
        for pair in message.content.get("headers") or []:
            try:
                name, value = pair
            except (TypeError, ValueError):
                continue
            name = name.decode("latin-1") if isinstance(name, bytes) else name
            if isinstance(name, str) and name.lower() == "origin":
                if isinstance(value, bytes):
                    try:
                        return value.decode("ascii")
                    except UnicodeDecodeError:
                        return None
                return value if isinstance(value, str) else None
        return None

    def deny(self, message: Any) -> None:
        """Reject the handshake (HTTP 403 from the interface server)."""
        message.reply_channel.send({"accept": False})

    def validate_origin(self, message: Any, origin: str) -> bool:
        """Whether ``origin`` may open a socket; override this. The base class allows none.

        Args:
            message: the websocket.connect message.
            origin: the Origin header value, e.g. ``"https://example.com"``.

        Returns:
            True to run the consumer, False to reject.
        """
        return False


class AllowedHostsOnlyOriginValidator(BaseOriginValidator):
    """Allow origins whose host is in ``settings.ALLOWED_HOSTS`` (same rules as Django).

    With ``DEBUG`` and an empty ``ALLOWED_HOSTS``, localhost names are allowed, as Django's
    runserver does.
    """

    def validate_origin(self, message: Any, origin: str) -> bool:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        try:
            parts = urlsplit(origin.strip())
            hostname = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            return False
        if not parts.scheme or not hostname:
            return False  # "null", a bare word, or no host part
        if ":" in hostname:
            hostname = f"[{hostname}]"  # IPv6, written as ALLOWED_HOSTS writes it
        return bool(validate_host(hostname, allowed))


#: ``@allowed_hosts_only`` (the name the Channels docs use).
allowed_hosts_only = AllowedHostsOnlyOriginValidator
