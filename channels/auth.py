"""Django users in consumers: ``message.user`` from the HTTP or the channel session.

- ``http_session_user``: user of the HTTP session (cookie or ``session_key`` query param);
  only on messages carrying headers (``http.request``, ``websocket.connect``).
- ``channel_session_user``: user stored in the channel session (any message of a socket).
- ``transfer_user(from_session, to_session)``: copy the login from one session to another.
- ``channel_session_user_from_http``: on connect, copy the HTTP login into the channel
  session, so later messages of the socket can use ``channel_session_user``.
- ``channel_and_http_session_user_from_http``: the same, keeping ``http_session`` too.

Users are looked up with ``django.contrib.auth.get_user`` on a stand-in request holding
only the session, so session-hash verification works exactly as for views.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from django.contrib import auth

from .sessions import channel_and_http_session, channel_session, find_message, http_session

__all__ = [
    "channel_and_http_session_user_from_http",
    "channel_session_user",
    "channel_session_user_from_http",
    "http_session_user",
    "transfer_user",
]

Consumer = Callable[..., Any]

_LOGIN_KEYS = (auth.SESSION_KEY, auth.BACKEND_SESSION_KEY, auth.HASH_SESSION_KEY)


class _SessionOnlyRequest:
    """What ``auth.get_user`` needs of a request: a ``session``."""

    def __init__(self, session: Any) -> None:
        self.session = session


def _user_of(session: Any) -> Any:
    if session is None:
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()
    return auth.get_user(_SessionOnlyRequest(session))


def transfer_user(from_session: Any, to_session: Any) -> None:
    """Copy the logged-in user (id, backend, hash) from one session to another.

    An anonymous ``from_session`` logs ``to_session`` out.
    """
    for key in _LOGIN_KEYS:
        if key in from_session:
            to_session[key] = from_session[key]
        elif key in to_session:
            del to_session[key]


def http_session_user(func: Consumer) -> Consumer:
    """``message.http_session`` plus ``message.user`` (AnonymousUser without a session)."""

    @http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        message.user = _user_of(message.http_session)
        return func(*args, **kwargs)

    return inner


def channel_session_user(func: Consumer) -> Consumer:
    """``message.channel_session`` plus ``message.user`` from it."""

    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        if not hasattr(message, "user"):
            message.user = _user_of(message.channel_session)
        return func(*args, **kwargs)

    return inner


def _user_from_http(func: Consumer, session_decorator: Callable[[Consumer], Consumer]) -> Consumer:
    # The two *_user_from_http decorators differ only in which session decorator runs.
    @http_session_user
    @session_decorator
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(*args, **kwargs)

    return inner


def channel_session_user_from_http(func: Consumer) -> Consumer:
    """For connect consumers: copy the HTTP session's login into the channel session.

    The consumer gets ``message.user``, ``message.http_session`` and
    ``message.channel_session``; later messages use ``@channel_session_user``.
    """
    return _user_from_http(func, channel_session)


def channel_and_http_session_user_from_http(func: Consumer) -> Consumer:
    """Like ``channel_session_user_from_http``, and keeps ``http_session`` on later messages."""
    return _user_from_http(func, channel_and_http_session)
