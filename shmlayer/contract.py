"""The ASGI 1 channel-layer contract every layer of shmchannels shares.

``shmlayer.ShmChannelLayer``, the in-memory layer and the Redis layer all subclass
:class:`BaseChannelLayer`, so name rules, message checks, capacity lookup and
serialisation are written once (``../shared/docs/asgi1.md`` §1–4). This module imports
nothing above the standard library and msgpack: the interface server depends on it.

Names (asgi1.md §2):

- normal channel ``http.request``: many readers, each message to exactly one;
- single-reader channel ``http.request.body?AbC``: made by :meth:`new_channel`;
- process channel ``interface.3Xq!conn7``: senders use the full name, the owning process
  receives on ``interface.3Xq!`` and is handed the full name back.

Capacity of a process channel counts per *full* name (``prefix!local``), not per
prefix as asgi_ipc/asgi_redis did: one slow socket must not make a broadcast drop the
copies of every other socket on the same interface process (asgi1.md §4, §10).
"""

from __future__ import annotations

import fnmatch
import random
import re
import string
import threading
import warnings
from typing import Any, Callable, Iterable, Mapping, Pattern

import msgpack

__all__ = [
    "ASGI_CHANNEL_KEY",
    "BaseChannelLayer",
    "ChannelFull",
    "MAX_NAME_LENGTH",
    "MessageTooLarge",
    "compile_capacities",
    "deserialize",
    "random_suffix",
    "serialize",
    "validate_channel_name",
    "validate_group_name",
    "validate_message",
]

#: Longest channel or group name any layer accepts (the spec asks for at least 100).
MAX_NAME_LENGTH = 250

#: Reserved key layers may use internally; a user message carrying it is rejected.
ASGI_CHANNEL_KEY = "__asgi_channel__"

_CHANNEL_RE = re.compile(r"^[A-Za-z0-9._-]+([?!][A-Za-z0-9._-]*)?\Z")
_GROUP_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")
_SUFFIX_ALPHABET = string.ascii_letters + string.digits
_sysrandom = random.SystemRandom()


class ChannelFull(Exception):
    """The channel already holds ``capacity`` live messages; the message was not queued.

    What to do depends on the message (asgi1.md §5): an interface answers 503 to a new
    request, an application waits and retries a reply.
    """


class MessageTooLarge(Exception):
    """The serialised message is over the layer's ``max_message_size``; nothing was queued."""


def validate_channel_name(name: object, receive: bool = False) -> str:
    """Check a channel name and return it.

    Args:
        name: the channel name.
        receive: True when the name is used in ``receive``: a process channel is then
            named by its prefix only (it must end at the ``!``).

    Raises:
        TypeError: the name is not a str, is too long, or breaks the rules of §2.
    """
    if not isinstance(name, str):
        raise TypeError(f"Channel name must be a str, not {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise TypeError(f"Channel name is longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
    if not _CHANNEL_RE.match(name):
        raise TypeError(
            f"Invalid channel name {name!r}: use ASCII letters, digits, '-', '_' and '.', "
            "with at most one '?' or '!'"
        )
    if name.endswith("?"):
        raise TypeError(f"Invalid channel name {name!r}: a name ending in '?' is a new_channel() pattern")
    if "!" in name:
        if receive and not name.endswith("!"):
            raise TypeError(f"Process channel {name!r} in receive() must end at the '!'")
        if not receive and name.endswith("!"):
            raise TypeError(f"Cannot send to {name!r}: a process channel needs a part after the '!'")
    return name


def validate_group_name(name: object) -> str:
    """Check a group name and return it.

    Raises:
        TypeError: not a str, too long, or not ``[A-Za-z0-9._-]+``.
    """
    if not isinstance(name, str):
        raise TypeError(f"Group name must be a str, not {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise TypeError(f"Group name is longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
    if not _GROUP_RE.match(name):
        raise TypeError(f"Invalid group name {name!r}: use ASCII letters, digits, '-', '_' and '.'")
    return name


def _check_value(value: object, path: str) -> None:
    # Scalars are checked by msgpack itself; containers are walked here so that a
    # non-str dict key anywhere is caught at send time, not by the receiver.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"Message key {path}[{key!r}] must be a str")
            _check_value(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise TypeError(f"Message value {path} does not fit a signed 64-bit int")
    elif not isinstance(value, (str, bytes, float, bool, type(None))):
        raise TypeError(
            f"Message value {path} has type {type(value).__name__}; "
            "ASGI messages hold only dict, list, str, bytes, int, float, bool and None"
        )


#: Exact types a message may hold at any depth without further checks.
_PLAIN_SCALARS = frozenset((str, bytes, float, bool, type(None)))
_I64 = 2**63


def _plain(value: object) -> bool:
    """True if ``value`` is built only from exact plain types (the common case).

    A fast path for :func:`_check_value`: it builds no error paths and calls no
    isinstance chains. Anything unusual (subclasses, huge ints, bad keys) returns False
    and the full check then accepts it or raises with the path of the bad value.
    """
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is int:
        return -_I64 <= value < _I64  # type: ignore[operator]
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return False
            if type(item) not in _PLAIN_SCALARS and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            if type(item) not in _PLAIN_SCALARS and not _plain(item):
                return False
        return True
    return False


#: validate_message's fast check: _fastpath.plain gives _plain's answers in C (~0.1 us
#: instead of ~0.4 us for a small message), and False beyond PLAIN_MAX_DEPTH containers,
#: where _check_value then decides. Without the extension (not built, or built before
#: plain existed) the reference does the job.
_plain_check: Callable[[object], bool] = _plain
try:
    from ._fastpath import plain as _c_plain
except ImportError:
    pass
else:
    _plain_check = _c_plain


def channel_list(channels: object) -> list[str]:
    """The ``channels`` argument of ``receive`` as a list (names not yet validated).

    Raises:
        TypeError: a single name (a str would otherwise be read as one-letter names) or
            something that is not a collection of names.
    """
    if type(channels) is list:
        return channels  # the common case, no copy
    if isinstance(channels, (str, bytes)):
        raise TypeError(f"receive() takes a list of channel names, not a single name {channels!r}")
    try:
        return list(channels)  # type: ignore[call-overload,no-any-return]
    except TypeError:
        raise TypeError(f"receive() takes a list of channel names, not {channels!r}") from None


def validate_message(message: object) -> Mapping[str, Any]:
    """Check that ``message`` is an ASGI message (asgi1.md §3) and return it.

    Raises:
        TypeError: not a dict, a non-str key, a value of a type ASGI does not allow, or
            the reserved ``__asgi_channel__`` key.
    """
    if not isinstance(message, dict):
        raise TypeError(f"Message must be a dict, not {type(message).__name__}")
    if ASGI_CHANNEL_KEY in message:
        raise TypeError(f"Message key {ASGI_CHANNEL_KEY!r} is reserved for the layer")
    try:
        if not _plain_check(message):
            _check_value(message, "message")
    except RecursionError:
        # A message that contains itself (or absurd nesting) would otherwise escape as a
        # RecursionError traceback from deep inside the walk.
        raise TypeError("Message is nested too deeply (does it contain itself?)") from None
    return message


_packers = threading.local()


def serialize(message: Mapping[str, Any]) -> bytes:
    """Encode a validated message; bytes and str stay distinct types at every depth."""
    # One reusable Packer per thread: packb builds a new one per call, which costs more
    # than packing a small message. Per thread because packing a dict subclass runs Python
    # code, where another thread could take the GIL and use the same buffer.
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(message)  # type: ignore[no-any-return]  # msgpack is untyped


def deserialize(data: bytes) -> dict[str, Any]:
    """Decode what :func:`serialize` produced into a fresh dict (the receiver's copy)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=True)  # type: ignore[no-any-return]


def random_suffix(length: int = 12) -> str:
    """Random letters and digits for new single-reader and process channel names."""
    return "".join(_sysrandom.choices(_SUFFIX_ALPHABET, k=length))


def compile_capacities(channel_capacity: Mapping[Any, int] | None) -> list[tuple[Pattern[str], int]]:
    """Turn ``{glob str or compiled regex: capacity}`` into an ordered match list.

    Raises:
        TypeError: a key that is neither a str nor a compiled pattern, or a capacity that
            is not a positive int.
    """
    compiled: list[tuple[Pattern[str], int]] = []
    for pattern, capacity in (channel_capacity or {}).items():
        if isinstance(pattern, str):
            regex = re.compile(fnmatch.translate(pattern))
        elif isinstance(pattern, re.Pattern):
            regex = pattern
        else:
            raise TypeError(f"channel_capacity key {pattern!r} must be a glob str or a compiled regex")
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise TypeError(f"channel_capacity[{pattern!r}] must be a positive int, not {capacity!r}")
        compiled.append((regex, capacity))
    return compiled


class BaseChannelLayer:
    """Shared behaviour of every ASGI 1 layer: configuration, names, capacities.

    Subclasses implement ``send``, ``receive``, ``new_channel`` and the extensions they
    list in ``extensions``.

    Args:
        expiry: seconds an unread message lives after its own send.
        group_expiry: seconds a membership lives after its last ``group_add``.
        capacity: live messages a channel holds before ``send`` raises ``ChannelFull``.
        channel_capacity: ``{glob or compiled regex: capacity}``; first match wins.
        max_message_size: largest *serialised* (msgpack) message in bytes (default 1 MiB).
    """

    extensions: list[str] = []

    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        max_message_size: int = 1024 * 1024,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise TypeError(f"capacity must be a positive int, not {capacity!r}")
        if not isinstance(max_message_size, int) or isinstance(max_message_size, bool) or max_message_size < 1:
            raise TypeError(f"max_message_size must be a positive int of bytes, not {max_message_size!r}")
        if not isinstance(expiry, (int, float)) or expiry <= 0:
            raise TypeError(f"expiry must be a positive number of seconds, not {expiry!r}")
        if not isinstance(group_expiry, int) or group_expiry <= 0:
            raise TypeError(f"group_expiry must be a positive int of seconds, not {group_expiry!r}")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.channel_capacity = compile_capacities(channel_capacity)
        self.max_message_size = max_message_size

    def encode_message(self, message: object) -> bytes:
        """Validate and serialise ``message`` for ``send``/``send_group``.

        Raises:
            TypeError: not an ASGI message (see :func:`validate_message`).
            MessageTooLarge: over ``max_message_size`` once serialised.
        """
        validate_message(message)
        try:
            data = serialize(message)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"Message cannot be serialised: {exc}") from exc
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"Message is {len(data)} bytes serialised, over max_message_size {self.max_message_size}"
            )
        return data

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching ``channel_capacity`` entry, else ``capacity``."""
        for regex, capacity in self.channel_capacity:
            if regex.match(channel):
                return capacity
        return self.capacity

    def receive_many(self, channels: Iterable[str], block: bool = False) -> tuple[str | None, dict[str, Any] | None]:
        """Deprecated alias of ``receive``; Channels 1.1.8 still calls it."""
        warnings.warn("receive_many() is deprecated, use receive()", DeprecationWarning, stacklevel=2)
        return self.receive(channels, block=block)  # type: ignore[attr-defined,no-any-return]

    def _new_channel_name(self, pattern: object) -> str:
        # Only '?' patterns make new channels (asgiref conformance: 'x!' and 'x.y' raise).
        if not isinstance(pattern, str) or not pattern.endswith("?"):
            raise TypeError(f"new_channel() needs a pattern ending in '?', not {pattern!r}")
        validate_channel_name(pattern + "x")
        return pattern + random_suffix()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}>"
