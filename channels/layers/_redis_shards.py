"""Connections of the Redis channel layer: ``hosts`` parsing, sharding, error mapping.

Each ``hosts`` entry is one shard with one sync connection pool (thread- and fork-safe,
as redis-py's pools are) and, per running event loop, one ``redis.asyncio`` client.
Automatic retries are switched off on purpose: a script whose reply was lost may have
run, and running it again could deliver a message twice (asgi1.md §4: drop rather than
duplicate). A lost connection surfaces as :class:`RedisLayerConnectionError` and the next
call opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.exceptions
from redis.backoff import NoBackoff
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

from . import _redis_scripts as scripts

__all__ = ["RedisLayerConnectionError", "Shard", "make_shards", "shard_index"]

_SCRIPT_NAMES = (
    "SEND",
    "SEND_GROUP",
    "RECEIVE",
    "GROUP_ADD",
    "GROUP_DISCARD",
    "GROUP_CHANNELS",
    "DISCARD_PREFIX",
    "CHANNEL_STATS",
)


class RedisLayerConnectionError(ConnectionError):
    """A Redis server of the layer could not be reached or stopped answering.

    The operation may or may not have taken effect (a send may be lost, never doubled).
    The next call reconnects.
    """


@contextlib.contextmanager
def translate_errors(label: str) -> Iterator[None]:
    """Turn redis-py's connection and timeout errors into :class:`RedisLayerConnectionError`."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise RedisLayerConnectionError(f"Redis channel layer: {label} is unreachable: {exc}") from exc


def shard_index(key: str, shards: int) -> int:
    """Jump consistent hash (Lamping & Veach) of ``key`` onto ``range(shards)``.

    Adding a host moves only ~1/n of the keys, and every process computes the same index.
    """
    if shards == 1:
        return 0
    state = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    bucket, jump = -1, 0
    while jump < shards:
        bucket = jump
        state = (state * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * (float(1 << 31) / float((state >> 33) + 1)))
    return bucket


@dataclass
class Shard:
    """One Redis server: its sync client and scripts, and async clients per event loop."""

    label: str
    url: str | None
    options: dict[str, Any]
    client: redis.Redis = field(init=False)
    scripts: dict[str, Any] = field(init=False)
    _async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]]" = field(
        init=False, default_factory=weakref.WeakKeyDictionary
    )

    def __post_init__(self) -> None:
        if self.url is not None:
            pool = redis.ConnectionPool.from_url(self.url, **self.options)
        else:
            pool = redis.ConnectionPool(**self.options)
        self.client = redis.Redis(connection_pool=pool)
        self.scripts = {name: self.client.register_script(getattr(scripts, name)) for name in _SCRIPT_NAMES}

    def async_client(self) -> tuple[Any, dict[str, Any]]:
        """The ``redis.asyncio`` client (and its scripts) of the running event loop."""
        loop = asyncio.get_running_loop()
        found = self._async.get(loop)
        if found is None:
            options = dict(self.options, retry=AsyncRetry(NoBackoff(), 0))
            if self.url is not None:
                pool = redis.asyncio.ConnectionPool.from_url(self.url, **options)
            else:
                pool = redis.asyncio.ConnectionPool(**options)
            client = redis.asyncio.Redis(connection_pool=pool)
            found = (client, {name: client.register_script(getattr(scripts, name)) for name in _SCRIPT_NAMES})
            self._async[loop] = found
        return found

    def close(self) -> None:
        """Close the sync pool; async pools are closed on their own loop (or with it)."""
        self.client.connection_pool.disconnect()
        for loop, (client, _) in list(self._async.items()):
            if loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(client.aclose(close_connection_pool=True))
            elif not loop.is_running():
                loop.run_until_complete(client.aclose(close_connection_pool=True))
        self._async.clear()

    async def aclose(self) -> None:
        """Close this loop's async client (from a coroutine on that loop)."""
        loop = asyncio.get_running_loop()
        found = self._async.pop(loop, None)
        if found is not None:
            await found[0].aclose(close_connection_pool=True)


def _host_label(entry: object) -> str:
    if isinstance(entry, str):
        parts = urlsplit(entry)
        # never echo a password from the URL into an error message
        return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"
    return repr(entry)


def make_shards(
    hosts: Sequence[Any] | str | None,
    connect_timeout: float,
    socket_timeout: float,
    connection_kwargs: Mapping[str, Any] | None = None,
) -> list[Shard]:
    """Build one :class:`Shard` per ``hosts`` entry.

    Args:
        hosts: ``None`` (``localhost:6379``), a ``redis://``/``rediss://``/``unix://`` URL,
            or a list of URLs and ``(host, port)`` tuples (as asgi_redis accepted).
        connect_timeout: seconds to wait for a TCP connection.
        socket_timeout: seconds to wait for any reply (must exceed the 1 s blocking wait).
        connection_kwargs: extra redis-py connection options (password, ssl_*, ...).

    Raises:
        TypeError: an entry that is neither a URL nor a ``(host, port)`` pair.
    """
    if hosts is None:
        hosts = [("localhost", 6379)]
    elif isinstance(hosts, str) or (isinstance(hosts, tuple) and len(hosts) == 2 and isinstance(hosts[0], str)):
        hosts = [hosts]  # one URL or one (host, port) pair
    if not isinstance(hosts, (list, tuple)) or not hosts:
        raise TypeError(f"hosts must be a non-empty list of redis:// URLs or (host, port) tuples, not {hosts!r}")
    base = dict(connection_kwargs or {})
    base.update(
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )
    shards = []
    for entry in hosts:
        if isinstance(entry, str):
            if urlsplit(entry).scheme not in ("redis", "rediss", "unix"):
                raise TypeError(f"Redis host URL {_host_label(entry)!r} must start with redis://, rediss:// or unix://")
            shards.append(Shard(_host_label(entry), entry, dict(base)))
        elif (
            isinstance(entry, (list, tuple))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
        ):
            shards.append(Shard(f"{entry[0]}:{entry[1]}", None, dict(base, host=entry[0], port=entry[1])))
        else:
            raise TypeError(f"Redis host {entry!r} must be a redis:// URL or a (host, port) tuple")
    return shards
