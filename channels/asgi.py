"""Channel layers from ``settings.CHANNEL_LAYERS``, the way Channels 1.x loaded them.

::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_redis.RedisChannelLayer",   # or any path below
            "CONFIG": {"capacity": 100},                 # kwargs of the layer class
            "ROUTING": "myproject.routing.channel_routing",
        },
    }

Backend paths (the 1.x package names are mapped; we ship no package of those names):

==============================================  ==============================================
``BACKEND``                                      class used
==============================================  ==============================================
``shmlayer.ShmChannelLayer``,                    the shared-memory layer
``asgi_ipc.IPCChannelLayer``
``channels.layers.inmemory.InMemoryChannelLayer``, in-process in-memory layer (tests, one
``asgiref.inmemory.ChannelLayer``                process only)
``channels.layers.redis.RedisChannelLayer``,     the Redis layer (several hosts)
``asgi_redis.RedisChannelLayer``
anything else                                    imported as a dotted path
==============================================  ==============================================

With no ``CHANNEL_LAYERS`` setting the default layer is the shm layer with its defaults and
an empty routing (HTTP goes to Django views, WebSockets are accepted).

Default capacities: the shared request channels are where a burst lands first, so unless
the user names them in ``channel_capacity`` the loader sets
``http.request: 200, websocket.connect: 200, websocket.receive: 500,
websocket.disconnect: 500``, ``__wait__.*: 500`` (enforce_ordering's per-socket wait
channels) and ``*!*: 500`` (reply channels, so a broadcast burst does not skip a socket
that is merely behind) (:data:`DEFAULT_CHANNEL_CAPACITY`). The user's entries come
first and so win (first match wins). The numbers let 50 clients chat at once, or one client
send 50 frames back to back under ``enforce_ordering``, without an interface answering
503 / closing 1013.

An interface server started as ``myproject.asgi:channel_layer`` reads the module attribute
``channel_layer`` of the project's ``asgi.py`` (``channel_layer = get_channel_layer()``);
``channels.asgi.channel_layer`` is the same lazily.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import DEFAULT_CHANNEL_LAYER
from .utils import import_by_path, name_that_thing

__all__ = [
    "BACKEND_ALIASES",
    "DEFAULT_CHANNEL_CAPACITY",
    "ChannelLayerManager",
    "ChannelLayerWrapper",
    "InvalidChannelLayerError",
    "channel_layers",
    "get_channel_layer",
    "layer_from_config",
]

SHM_BACKEND = "shmlayer.ShmChannelLayer"
INMEMORY_BACKEND = "channels.layers.inmemory.InMemoryChannelLayer"
REDIS_BACKEND = "channels.layers.redis.RedisChannelLayer"

#: 1.x package paths -> the class that replaces them.
BACKEND_ALIASES = {
    "asgi_ipc.IPCChannelLayer": SHM_BACKEND,
    "asgiref.inmemory.ChannelLayer": INMEMORY_BACKEND,
    "asgi_redis.RedisChannelLayer": REDIS_BACKEND,
}

#: Capacities set for the shared request channels when the user gives none (see above).
DEFAULT_CHANNEL_CAPACITY = {
    "http.request": 200,
    "websocket.connect": 200,
    "websocket.receive": 500,
    "websocket.disconnect": 500,
    # enforce_ordering's per-socket wait channels: room for a whole receive burst of one
    # socket, so only a truly stuck socket is closed (1011) for a full wait channel.
    "__wait__.*": 500,
    # Reply channels (``interface.<id>!<conn>``, one per connection): a group broadcast
    # burst queues up to this many copies for one socket before a slow socket starts
    # missing them (each miss counted). Queues hold no memory until used.
    "*!*": 500,
}

_MIB = 1024 * 1024


class InvalidChannelLayerError(ImproperlyConfigured):
    """``CHANNEL_LAYERS`` names a layer that cannot be built (bad path, CONFIG, alias)."""


def _default_configs() -> dict[str, Any]:
    return {DEFAULT_CHANNEL_LAYER: {"BACKEND": SHM_BACKEND, "ROUTING": []}}


def _translate_ipc_config(config: dict[str, Any]) -> dict[str, Any]:
    # asgi_ipc took prefix / message_memory / group_memory; the shm layer takes one
    # segment name and one size holding both.
    config = dict(config)
    if "prefix" in config:
        config.setdefault("name", config.pop("prefix"))
    memory = config.pop("message_memory", None), config.pop("group_memory", None)
    if any(part is not None for part in memory) and "size" not in config:
        config["size"] = sum(part or 0 for part in memory) or 64 * _MIB
    return config


def _with_default_capacities(config: dict[str, Any]) -> dict[str, Any]:
    user = config.get("channel_capacity") or {}
    if not isinstance(user, dict):
        return config  # the layer reports the wrong type itself
    merged = dict(user)
    for pattern, capacity in DEFAULT_CHANNEL_CAPACITY.items():
        merged.setdefault(pattern, capacity)
    return {**config, "channel_capacity": merged}


def layer_from_config(alias: str, config: Any) -> tuple[Any, Any]:
    """Instantiate the layer of one CHANNEL_LAYERS entry; returns (layer, routing).

    Public so that the master builds exactly the layer its workers will (same segment
    name, size and merged capacities) without setting Django up.

    Raises:
        InvalidChannelLayerError: a bad BACKEND path, CONFIG or entry.
    """
    if not isinstance(config, dict):
        raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{alias!r}] must be a dict, not {type(config).__name__}")
    backend = config.get("BACKEND")
    if not isinstance(backend, str) or not backend:
        raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{alias!r}] has no BACKEND (a dotted path to a layer class)")
    path = BACKEND_ALIASES.get(backend, backend)
    try:
        layer_class = import_by_path(path, "channel layer BACKEND")
    except ImproperlyConfigured as exc:
        raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{alias!r}]: {exc}") from exc
    options = config.get("CONFIG") or {}
    if not isinstance(options, dict):
        raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{alias!r}]['CONFIG'] must be a dict of layer options")
    if backend == "asgi_ipc.IPCChannelLayer":
        options = _translate_ipc_config(options)
    from shmlayer.contract import BaseChannelLayer

    if isinstance(layer_class, type) and issubclass(layer_class, BaseChannelLayer):
        options = _with_default_capacities(options)
    try:
        layer = layer_class(**options)
    except (TypeError, ValueError) as exc:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]: cannot create {path} with CONFIG {sorted(options)}: {exc}"
        ) from exc
    return layer, config.get("ROUTING", [])


class ChannelLayerWrapper:
    """One configured layer: the raw layer object plus its alias and routing.

    Attribute access falls through to the layer, so a wrapper can stand wherever a layer
    is expected (``message.channel_layer.send``, ``.ChannelFull``, ``.group_add``).

    Attributes:
        channel_layer: the layer object.
        alias: its key in ``CHANNEL_LAYERS``.
        routing: the ROUTING value as configured (dotted path, list or dict).
    """

    def __init__(self, channel_layer: Any, alias: str, routing: Any) -> None:
        self.channel_layer = channel_layer
        self.alias = alias
        self.routing = routing
        self._router: Any = None
        self._router_lock = threading.Lock()

    @property
    def router(self) -> Any:
        """The :class:`channels.routing.Router` of ``routing``, built on first use.

        Lazy so that interface servers, which only need the layer, never import
        consumers; workers touch it at start and so see routing errors at once.

        Raises:
            ImproperlyConfigured: the routing module cannot be imported or holds an entry
                that is not a route.
        """
        if self._router is None:
            with self._router_lock:
                if self._router is None:
                    from .routing import Router

                    self._router = Router(self.routing)
        return self._router

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper itself lacks.
        if name.startswith("__") or name in ("channel_layer", "_router", "_router_lock"):
            raise AttributeError(name)
        return getattr(self.channel_layer, name)

    def __str__(self) -> str:
        return f"{self.alias} ({name_that_thing(self.channel_layer)})"

    def __repr__(self) -> str:
        return f"<ChannelLayerWrapper {self}>"


class ChannelLayerManager:
    """Builds and caches one :class:`ChannelLayerWrapper` per alias of CHANNEL_LAYERS.

    ``channel_layers["default"]`` builds the layer on first access (thread-safe).
    """

    def __init__(self) -> None:
        self.backends: dict[str, ChannelLayerWrapper] = {}
        self._lock = threading.RLock()

    @property
    def configs(self) -> dict[str, Any]:
        """``settings.CHANNEL_LAYERS``, or the shm default when the setting is absent.

        Raises:
            ImproperlyConfigured: Django settings are not configured, or the setting is
                not a dict.
        """
        from django.conf import settings

        configs = getattr(settings, "CHANNEL_LAYERS", None)
        if configs is None:
            return _default_configs()
        if not isinstance(configs, dict):
            raise InvalidChannelLayerError("CHANNEL_LAYERS must be a dict of alias -> layer config")
        return configs

    def make_backend(self, alias: str) -> ChannelLayerWrapper:
        """Build the wrapper of ``alias`` (not cached; ``__getitem__`` caches).

        Raises:
            InvalidChannelLayerError: unknown alias, bad BACKEND path or CONFIG.
        """
        configs = self.configs
        if alias not in configs:
            known = ", ".join(sorted(map(repr, configs))) or "none"
            raise InvalidChannelLayerError(f"No channel layer {alias!r} in CHANNEL_LAYERS (configured: {known})")
        layer, routing = layer_from_config(alias, configs[alias])
        return ChannelLayerWrapper(layer, alias, routing)

    def __getitem__(self, alias: str) -> ChannelLayerWrapper:
        wrapper = self.backends.get(alias)
        if wrapper is None:
            with self._lock:
                wrapper = self.backends.get(alias)
                if wrapper is None:
                    wrapper = self.backends[alias] = self.make_backend(alias)
        return wrapper

    def __contains__(self, alias: object) -> bool:
        return alias in self.configs

    def set(self, alias: str, wrapper: ChannelLayerWrapper | None) -> ChannelLayerWrapper | None:
        """Install ``wrapper`` for ``alias`` (None removes it); returns the previous one.

        Used by test helpers to swap layers in and out.
        """
        with self._lock:
            old = self.backends.pop(alias, None)
            if wrapper is not None:
                self.backends[alias] = wrapper
            return old

    def reset(self) -> None:
        """Forget every built layer (closing them); the next access rebuilds from settings."""
        with self._lock:
            backends, self.backends = self.backends, {}
        for wrapper in backends.values():
            close = getattr(wrapper.channel_layer, "close", None)
            if callable(close):
                close()


#: The process-wide manager: ``channel_layers[alias]``.
channel_layers = ChannelLayerManager()


def _ensure_django() -> None:
    from django.apps import apps

    if apps.ready or apps.loading:
        return
    import django
    from django.conf import settings

    if not settings.configured:
        # Reading a setting raises Django's own clear ImproperlyConfigured
        # ("Requested setting ..., set DJANGO_SETTINGS_MODULE").
        settings.INSTALLED_APPS  # noqa: B018
    django.setup(set_prefix=False)


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> Any:
    """The raw layer object of ``alias``, setting Django up first if needed.

    This is what a project's ``asgi.py`` calls (``channel_layer = get_channel_layer()``)
    so that interface servers can load ``myproject.asgi:channel_layer``.

    Args:
        alias: key in ``CHANNEL_LAYERS``.

    Raises:
        ImproperlyConfigured: settings missing, unknown alias, bad BACKEND or CONFIG.
    """
    _ensure_django()
    return channel_layers[alias].channel_layer


def __getattr__(name: str) -> Any:
    # ``channels.asgi.channel_layer`` -> the default layer, built on first access.
    if name == "channel_layer":
        return get_channel_layer()
    raise AttributeError(f"module 'channels.asgi' has no attribute {name!r}")
