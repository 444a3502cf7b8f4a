"""Django Channels 1.x API for shmchannels.

``from channels import Channel, Group, route, route_class, include`` works as it did in
Channels 1.x. The names are loaded on first use (module ``__getattr__``, PEP 562) so that
importing a submodule such as ``channels.layers.inmemory`` pulls in neither Django's app
registry nor the routing machinery: interface servers and the shm layer import this
package without configuring Django.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.1.8+shm.0.1.0"

#: Alias of the channel layer used when none is named (``CHANNEL_LAYERS["default"]``).
DEFAULT_CHANNEL_LAYER = "default"

# name -> submodule that defines it; resolved lazily by __getattr__ below.
_LAZY = {
    "Channel": "channels.channel",
    "Group": "channels.channel",
    "route": "channels.routing",
    "route_class": "channels.routing",
    "include": "channels.routing",
    "channel_layers": "channels.asgi",
}

__all__ = ["DEFAULT_CHANNEL_LAYER", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'channels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
