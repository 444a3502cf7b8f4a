"""Sessions for consumers: ``channel_session`` (per socket) and ``http_session`` (per user).

``channel_session`` gives ``message.channel_session``, a Django session keyed by the reply
channel: every message of one WebSocket connection sees the same session, whichever
worker runs it. The key is ``"chn"`` + the first 29 hex digits of the SHA-1 of the reply
channel name (as Channels 1.x: deterministic, 32 characters). The session is saved after
the consumer if it was modified, and deleted after a ``websocket.disconnect`` consumer,
unless ``enforce_ordering`` still has earlier messages of the socket to run, in which case
it is left to expire after :func:`ordering_timeout` x 4 seconds.

``http_session`` gives ``message.http_session``, the user's HTTP session, found by a
``session_key`` query-string parameter or the session cookie (None if neither).

``enforce_ordering`` runs the messages of one socket strictly in ``order`` (see its
docstring and the theory of operation above it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from importlib import import_module
from typing import Any, Callable
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from shmlayer.contract import MAX_NAME_LENGTH

from .exceptions import ConsumeLater
from .message import pending_message_store

__all__ = [
    "channel_and_http_session",
    "channel_session",
    "enforce_ordering",
    "http_session",
    "session_for_reply_channel",
]

logger = logging.getLogger("django.channels.sessions")

#: Session key holding the next ``order`` enforce_ordering will run (Channels 1.x name).
ORDER_KEY = "__channels_next_order"
#: Session key set when enforce_ordering gave up on a socket (it was closed with 1011).
ORDER_BROKEN_KEY = "__channels_order_broken"

Consumer = Callable[..., Any]


def find_message(args: tuple[Any, ...]) -> Any:
    """The Message among a consumer's first two positional args (function or method).

    Raises:
        ValueError: no message-like argument (the decorator is misapplied).
    """
    for arg in args[:2]:
        if hasattr(arg, "content") and hasattr(arg, "reply_channel"):
            return arg
    raise ValueError("This decorator wraps consumers: call it with a channels Message as first argument")


def _session_engine(setting: str = "SESSION_ENGINE") -> Any:
    engine = import_module(getattr(settings, setting, None) or settings.SESSION_ENGINE)
    if engine.__name__ == "django.contrib.sessions.backends.signed_cookies":
        raise ValueError(
            "Channel sessions cannot use signed-cookie sessions (nothing to store them in): set "
            "CHANNEL_SESSION_ENGINE to a server-side engine such as django.contrib.sessions.backends.db"
        )
    return engine


def session_key_for_reply_channel(reply_channel: str) -> str:
    """The deterministic session key of a reply channel (``chn`` + 29 hex digits)."""
    return "chn" + hashlib.sha1(reply_channel.encode("utf-8")).hexdigest()[:29]


def session_for_reply_channel(reply_channel: str) -> SessionBase:
    """Load the channel session of ``reply_channel`` (empty if it does not exist yet).

    The returned session carries ``is_new`` (bool): True when nothing is stored yet, so
    the first save creates it.

    Raises:
        ValueError: the configured engine is signed cookies.
    """
    key = session_key_for_reply_channel(reply_channel)
    engine = _session_engine("CHANNEL_SESSION_ENGINE")
    session = engine.SessionStore(session_key=key)
    session._session  # noqa: B018 - load now; a missing session resets the key to None
    session.is_new = session.session_key is None  # type: ignore[attr-defined]
    session._session_key = key  # a missing row must be created under *our* key
    return session


def save_channel_session(session: SessionBase) -> None:
    """Persist a channel session: create it under its key if new, else update it.

    A session deleted meanwhile (the socket disconnected while this consumer ran) is
    not resurrected.
    """
    if getattr(session, "is_new", False):
        try:
            session.save(must_create=True)
            session.is_new = False  # type: ignore[attr-defined]
            return
        except CreateError:  # another worker created it first: update theirs
            session.is_new = False  # type: ignore[attr-defined]
    try:
        session.save()
    except UpdateError:
        logger.debug("Channel session %s vanished (socket gone); not saved", session.session_key)


def ordering_timeout() -> float:
    """Seconds enforce_ordering waits for a missing message (``CHANNEL_ORDERING_TIMEOUT``, 30)."""
    return float(getattr(settings, "CHANNEL_ORDERING_TIMEOUT", 30))


def _finish_channel_session(message: Any, session: SessionBase) -> None:
    if message.channel.name == "websocket.disconnect" and session.get(ORDER_BROKEN_KEY):
        session.delete()  # ordering gave up on this socket; nothing will read it again
        return
    if getattr(message, "_channels_deferred", False):
        # enforce_ordering parked this message; it has not run yet.
        if session.modified and not session.is_empty():
            save_channel_session(session)
        return
    if message.channel.name == "websocket.disconnect":
        next_order = session.get(ORDER_KEY)
        order = message.content.get("order")
        if isinstance(next_order, int) and isinstance(order, int) and next_order < order:
            # Ordered messages before this disconnect have not run yet; they need the
            # session. Let it expire instead of deleting it under them.
            session.set_expiry(int(ordering_timeout() * 4))
            save_channel_session(session)
        elif not getattr(session, "is_new", False):
            session.delete()
        return
    if session.modified and not session.is_empty():
        save_channel_session(session)


def channel_session(func: Consumer) -> Consumer:
    """Give the consumer ``message.channel_session``, a session tied to the reply channel.

    Raises:
        ValueError: the message has no reply_channel.
    """

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        if hasattr(message, "channel_session"):
            # An outer channel_session owns it; just save what this layer changed.
            try:
                return func(*args, **kwargs)
            finally:
                if message.channel_session.modified and not getattr(message, "_channels_deferred", False):
                    save_channel_session(message.channel_session)
                    message.channel_session.modified = False
        if not message.reply_channel:
            raise ValueError(
                f"@channel_session needs a reply_channel, and this message on {message.channel.name!r} has none"
            )
        session = session_for_reply_channel(message.reply_channel.name)
        message.channel_session = session
        try:
            return func(*args, **kwargs)
        finally:
            _finish_channel_session(message, session)

    return inner


def _header_values(message: Any, name: bytes) -> list[str]:
    values = []
    headers = message.content.get("headers") or []
    if isinstance(headers, dict):
        headers = headers.items()
    for pair in headers:
        try:
            key, value = pair
        except (TypeError, ValueError):
            continue
        key = key.encode("latin-1") if isinstance(key, str) else key
        if isinstance(key, bytes) and key.lower() == name:
            values.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return values


def session_key_from_message(message: Any) -> str | None:
    """The HTTP session key a request/connect message carries, or None.

    The ``session_key`` query-string parameter wins (WebSockets on another domain);
    else the session cookie (``settings.SESSION_COOKIE_NAME``).
    """
    from django.http.cookie import parse_cookie

    query = message.content.get("query_string") or b""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    if isinstance(query, str) and query:
        keys = parse_qs(query).get("session_key")
        if keys and keys[0]:
            return keys[0]
    cookies = "; ".join(_header_values(message, b"cookie"))
    if not cookies:
        return None
    return parse_cookie(cookies).get(settings.SESSION_COOKIE_NAME) or None


def http_session(func: Consumer) -> Consumer:
    """Give the consumer ``message.http_session``: the user's HTTP session, or None.

    Works on ``http.request`` and ``websocket.connect`` messages (the ones with headers
    and a query string). The session is saved after the consumer if it was modified.
    It never creates a session: that is SessionMiddleware's job in a view.
    """

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        if hasattr(message, "http_session"):
            result = func(*args, **kwargs)
            if message.http_session is not None and message.http_session.modified:
                message.http_session.save()
            return result
        key = session_key_from_message(message)
        session = _session_engine().SessionStore(session_key=key) if key else None
        message.http_session = session
        result = func(*args, **kwargs)
        if session is not None and session.modified and session.session_key is not None:
            session.save()
        return result

    return inner


def channel_and_http_session(func: Consumer) -> Consumer:
    """Both sessions; the HTTP session key is kept in the channel session at connect.

    Later messages of the socket (which carry no cookies) get ``http_session`` back from
    the key stored then.
    """

    @http_session
    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args)
        cookie_name = settings.SESSION_COOKIE_NAME
        if message.http_session is not None and cookie_name not in message.channel_session:
            message.channel_session[cookie_name] = message.http_session.session_key
        elif message.http_session is None and cookie_name in message.channel_session:
            key = message.channel_session[cookie_name]
            message.http_session = _session_engine().SessionStore(session_key=key)
        return func(*args, **kwargs)

    return inner


# ---------------------------------------------------------------------------------------
# enforce_ordering — theory of operation
#
# Every websocket.* message carries ``order``: connect 0, receives 1..n, disconnect n+1
# (asgi1.md §8). Several workers may pick up messages of one socket at once, so the
# decorator runs message k only when the channel session says k is next (ORDER_KEY):
#
# - order == next: run the consumer and save what it changed. Storing next = k+1 and
#   settling (below) is *deferred* to the flush of the consumer's held sends, after them
#   (PendingMessageStore.defer): k+1 cannot run anywhere -- not even when a parking
#   worker releases it -- before k's replies are on their channels. (A connect, order 0,
#   stores next = 1 at once: nothing of its socket can arrive before its accept is out.)
# - order > next: park the message on the socket's wait channel
#   (``__wait__.<reply channel with !/? turned into .>``), then settle: the worker
#   running k may have finished between our session read and our park.
# - order < next: a duplicate; dropped with a warning.
#
# settle: read next (fresh from the store), take everything off the wait channel, requeue
# the message whose order == next to its original channel, put the rest back, and if
# nothing was ready, re-read next: if it moved while we held the messages, go again
# (bounded). Invariant making this race-free: whoever advances next saves *before* it
# drains; whoever parks or puts back re-reads next *after* it did so. So the message that
# becomes ready is always seen by at least one drainer, and by at most one (a layer
# delivers a message once).
#
# Giving up: when the expected message has not come for CHANNEL_ORDERING_TIMEOUT seconds
# (30) while later ones wait, or the wait channel is full, order can no longer be kept:
# the socket is closed with 1011, the session is flagged ORDER_BROKEN_KEY, parked messages
# are dropped and later ones are ignored (except websocket.disconnect, which still runs so
# groups are left). This is logged at ERROR with the reason.
#
# A connect consumer without @enforce_ordering (the tutorial's) never stores next; since
# receives only exist after the connect consumer has finished (the handshake waits for
# it), a missing next means 1 for receives and 0 for a connect. Channels 1.x assumed 0
# and so never ran the tutorial's ws_message.
# ---------------------------------------------------------------------------------------

WAIT_PREFIX = "__wait__."
_MAX_DRAIN = 10_000
_SETTLE_ROUNDS = 4


def wait_channel_for(reply_channel: str) -> str:
    """The wait channel holding out-of-order messages of one reply channel."""
    name = WAIT_PREFIX + reply_channel.replace("!", ".").replace("?", ".")
    if len(name) > MAX_NAME_LENGTH:
        name = WAIT_PREFIX + "h." + hashlib.sha1(reply_channel.encode("utf-8")).hexdigest()
    return name


def _order_of(message: Any) -> int:
    order = message.content.get("order")
    if isinstance(order, bool) or not isinstance(order, int):
        raise ValueError(
            f"@enforce_ordering needs an integer 'order' in the message; the one on "
            f"{message.channel.name!r} has {order!r} (only websocket.* messages carry it)"
        )
    return order


def _expected(session: SessionBase, order: int) -> int:
    value = session.get(ORDER_KEY)
    if isinstance(value, int):
        return value
    return 0 if order == 0 else 1


def _fresh_expected(reply: str) -> int | None:
    session = session_for_reply_channel(reply)
    if session.get(ORDER_BROKEN_KEY):
        return None
    value = session.get(ORDER_KEY)
    return value if isinstance(value, int) else 1


def _drain(layer: Any, wait: str) -> list[dict[str, Any]]:
    taken = []
    for _ in range(_MAX_DRAIN):
        channel, content = layer.receive([wait], block=False)
        if channel is None:
            break
        taken.append(content)
    return taken


def _give_up(message: Any, why: str) -> None:
    reply = message.reply_channel.name
    logger.error("enforce_ordering: cannot keep order on %s: %s; closing the socket (1011)", reply, why)
    session = session_for_reply_channel(reply)
    session[ORDER_BROKEN_KEY] = True
    save_channel_session(session)
    _drain(message.channel_layer, wait_channel_for(reply))
    message.reply_channel.send({"close": 1011})


def _park(message: Any) -> bool:
    content = dict(message.content)
    content["original_channel"] = message.channel.name
    content.setdefault("__wait_started__", time.time())
    wait = wait_channel_for(message.reply_channel.name)
    try:
        message.channel_layer.send(wait, content)
    except message.channel_layer.ChannelFull:
        _give_up(message, f"its wait channel {wait} is full")
        return False
    return True


def _requeue(message: Any, content: dict[str, Any]) -> None:
    from .channel import Channel

    original = content.pop("original_channel", None) or message.channel.name
    content.pop("__wait_started__", None)
    # Held inside a consumer: goes out after this consumer's own sends (FIFO flush).
    Channel(original, channel_layer=message.channel_layer).send(content)


def _settle(message: Any, expected: int | None) -> None:
    layer = message.channel_layer
    reply = message.reply_channel.name
    wait = wait_channel_for(reply)
    for _ in range(_SETTLE_ROUNDS):
        if expected is None:
            expected = _fresh_expected(reply)
            if expected is None:  # ordering already gave up on this socket
                _drain(layer, wait)
                return
        parked = _drain(layer, wait)
        if not parked:
            return
        ready, later = None, []
        for content in parked:
            order = content.get("order")
            if order == expected and ready is None:
                ready = content
            elif isinstance(order, int) and order > expected:
                later.append(content)
            else:
                logger.warning("enforce_ordering: dropping duplicate message %r of %s", order, reply)
        if ready is None and later:
            oldest = min(float(c.get("__wait_started__") or time.time()) for c in later)
            waited = time.time() - oldest
            if waited > ordering_timeout():
                _give_up(message, f"message {expected} never came; {len(later)} later message(s) waited {waited:.1f}s")
                return
        for content in later:
            try:
                layer.send(wait, content)
            except layer.ChannelFull:
                _give_up(message, f"its wait channel {wait} is full")
                return
        if ready is not None:
            _requeue(message, ready)
            return
        fresh = _fresh_expected(reply)
        if fresh == expected:
            return
        expected = fresh


def _advance(message: Any, next_order: int) -> None:
    # Runs when the consumer's held sends are out (deferred to the flush): only now may
    # next_order run anywhere. Save first, then settle (the invariant above).
    reply = message.reply_channel.name
    if message.channel.name == "websocket.disconnect":
        _drain(message.channel_layer, wait_channel_for(reply))  # nothing comes after it
        return
    session = session_for_reply_channel(reply)
    current = session.get(ORDER_KEY)
    if session.get(ORDER_BROKEN_KEY) or (isinstance(current, int) and current >= next_order):
        return  # never move backwards (a connect's accept sent with immediately=True)
    session[ORDER_KEY] = next_order
    save_channel_session(session)
    _settle(message, next_order)


def enforce_ordering(func: Consumer | None = None, slight: bool = False) -> Any:
    """Run the messages of each socket strictly in their ``order`` (see the notes above).

    Use on ``websocket.receive`` (and optionally connect/disconnect) consumers; it
    implies ``channel_session``. Usable as ``@enforce_ordering`` or ``@enforce_ordering()``.

    Raises:
        ValueError: ``slight=True`` (removed in Channels 1.0), or a message without an
            integer ``order``.
    """
    if slight:
        raise ValueError("enforce_ordering(slight=True) is gone since Channels 1.0: use @enforce_ordering")

    def decorator(func: Consumer) -> Consumer:
        @channel_session
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            message = find_message(args)
            order = _order_of(message)
            session = message.channel_session
            if session.get(ORDER_BROKEN_KEY):
                if message.channel.name == "websocket.disconnect":
                    return func(*args, **kwargs)
                logger.debug("enforce_ordering: ignoring message %d of closed socket %s", order, message.reply_channel)
                message._channels_deferred = True
                return None
            expected = _expected(session, order)
            if order != expected:
                message._channels_deferred = True
                if order < expected:
                    logger.warning(
                        "enforce_ordering: dropping message %d of %s: already at %d", order, message.reply_channel, expected
                    )
                elif _park(message):
                    _settle(message, None)
                return None
            advance = True
            try:
                return func(*args, **kwargs)
            except ConsumeLater:
                advance = False  # the worker runs this message again; it is still next
                raise
            finally:
                if advance:
                    if session.modified:
                        save_channel_session(session)  # what the consumer changed
                        session.modified = False
                    release = functools.partial(_advance, message, order + 1)
                    # A connect advances at once: nothing of its socket exists before its
                    # accept goes out, and the first receive must then find next=1.
                    if order == 0 or not pending_message_store.defer(release):
                        release()

        return inner

    if func is not None:
        return decorator(func)
    return decorator
