"""Layer fixtures for the conformance suite: one factory per layer name.

Every test that takes ``layer`` or ``make_layer`` runs once per entry of
:data:`LAYER_FACTORIES` (test ids end in ``[inmemory]``, ``[shm]``, ...; select one with
``-k inmemory``). A layer whose import fails makes its tests *error*: a broken layer is
never skipped silently.

Adding a layer (e.g. Redis): write a context-manager factory below that takes the layer
kwargs (``capacity``, ``expiry``, ``group_expiry``, ``channel_capacity``,
``max_message_size``), yields a fresh, empty layer and cleans up everything it made, then
add it to ``LAYER_FACTORIES`` (and, if its tests need a marker, to ``LAYER_MARKS``).

A layer whose store other handles and processes can open (shm, Redis) also records a
*peer spec* with :func:`register_peer`: ``(class path, constructor kwargs)`` that open the
same store again. The ``peer_spec`` fixture hands it to the several-handles tests; layers
without one (in-memory) are not parametrised into those tests.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import re
from typing import Any, Callable, ContextManager, Iterator

import pytest

_counter = itertools.count()

#: id(layer) -> ("module.Class", JSON-able kwargs) opening the same store again.
_peer_specs: dict[int, tuple[str, dict[str, Any]]] = {}


def register_peer(layer: Any, class_path: str, kwargs: dict[str, Any]) -> None:
    """Record how another handle or process opens ``layer``'s store."""
    _peer_specs[id(layer)] = (class_path, kwargs)


@contextlib.contextmanager
def inmemory_layer(**kwargs: Any) -> Iterator[Any]:
    """A fresh ``InMemoryChannelLayer``."""
    from channels.layers.inmemory import InMemoryChannelLayer

    layer = InMemoryChannelLayer(**kwargs)
    try:
        yield layer
    finally:
        layer.close()


@contextlib.contextmanager
def shm_layer(**kwargs: Any) -> Iterator[Any]:
    """A ``ShmChannelLayer`` on its own 8 MiB segment, unlinked afterwards."""
    import shmlayer

    kwargs.setdefault("size", 8 * 1024 * 1024)
    name = f"shmch-test-{os.getpid()}-{next(_counter)}"
    try:
        layer = shmlayer.ShmChannelLayer(name=name, **kwargs)
    except Exception:
        # A refused configuration must not leave a half-made segment behind.
        _assert_no_shm_leftovers(name)
        raise
    register_peer(layer, "shmlayer.ShmChannelLayer", dict(kwargs, name=name))
    try:
        yield layer
    finally:
        _peer_specs.pop(id(layer), None)
        try:
            layer.unlink()
        finally:
            layer.close()
        _assert_no_shm_leftovers(name)


def _assert_no_shm_leftovers(name: str) -> None:
    mine = re.compile(re.escape(name) + r"(?![0-9])")
    leftovers = [entry for entry in os.listdir("/dev/shm") if mine.search(entry)]
    assert not leftovers, f"shm layer left {leftovers} in /dev/shm"


#: URL of the session's private redis-server, set by ``_redis_for_layers`` (redis tests only).
_redis_url: list[str] = []


@contextlib.contextmanager
def redis_layer(**kwargs: Any) -> Iterator[Any]:
    """A ``RedisChannelLayer`` on the private redis-server, with a prefix of its own, flushed afterwards."""
    from channels.layers.redis import RedisChannelLayer

    prefix = f"conf-{os.getpid()}-{next(_counter)}:"
    layer = RedisChannelLayer(hosts=[_redis_url[-1]], prefix=prefix, **kwargs)
    register_peer(layer, "channels.layers.redis.RedisChannelLayer", dict(kwargs, hosts=[_redis_url[-1]], prefix=prefix))
    try:
        yield layer
    finally:
        _peer_specs.pop(id(layer), None)
        try:
            layer.flush()
            layer.shards[0].client.delete(prefix + "epoch")
        finally:
            layer.close()


@pytest.fixture(autouse=True)
def _redis_for_layers(request: pytest.FixtureRequest) -> None:
    # Starts (once per session) the private redis-server only for tests run against "redis".
    if "layer_name" in request.fixturenames and request.getfixturevalue("layer_name") == "redis":
        _redis_url[:] = [request.getfixturevalue("redis_server").url]


#: layer name -> factory(**layer kwargs) -> context manager yielding a fresh layer.
LAYER_FACTORIES: dict[str, Callable[..., ContextManager[Any]]] = {
    "inmemory": inmemory_layer,
    "shm": shm_layer,
    "redis": redis_layer,
}

#: layer name -> pytest marks applied to every test run against that layer.
LAYER_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {"redis": (pytest.mark.redis,)}


@pytest.fixture(params=[pytest.param(name, marks=LAYER_MARKS.get(name, ()), id=name) for name in LAYER_FACTORIES])
def layer_name(request: pytest.FixtureRequest) -> str:
    """The name of the layer under test (a key of LAYER_FACTORIES)."""
    return str(request.param)


@pytest.fixture
def make_layer(layer_name: str) -> Iterator[Callable[..., Any]]:
    """``make_layer(**kwargs)`` builds a fresh layer of the current kind; all torn down after."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs: Any) -> Any:
            return stack.enter_context(LAYER_FACTORIES[layer_name](**kwargs))

        yield make


@pytest.fixture
def layer(make_layer: Callable[..., Any]) -> Any:
    """A fresh layer with default settings."""
    return make_layer()


@pytest.fixture
def peer_spec(layer: Any, layer_name: str) -> tuple[str, dict[str, Any]]:
    """How another handle or process opens ``layer``'s store (registered by its factory)."""
    spec = _peer_specs.get(id(layer))
    if spec is None:
        pytest.fail(f"{layer_name}: no peer spec registered (conftest.register_peer), so no second handle can open its store")
    return spec


def open_layer(spec: tuple[str, dict[str, Any]]) -> Any:
    """Open a new handle from a peer spec (the caller closes it)."""
    module, _, name = spec[0].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec[1])


@pytest.fixture
def peer(peer_spec: tuple[str, dict[str, Any]]) -> Iterator[Any]:
    """A second handle, in this process, on the store of ``layer``."""
    handle = open_layer(peer_spec)
    try:
        yield handle
    finally:
        handle.close()
