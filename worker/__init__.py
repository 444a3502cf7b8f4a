"""worker: the Django worker process — receive, route, run consumers.

``Worker`` runs consumer threads against one channel layer (Channels 1.x worker
semantics: consumer signals, held sends, DenyConnection, ChannelSocketException,
ConsumeLater); ``run_worker`` is what the master calls in a forked child, and
``manage.py runworker`` uses the same ``Worker``.

Importing this package imports no Django: the master imports ``run_worker`` before it
forks, and Django must be loaded by each worker (so a HUP reloads the project's code).
``Worker`` and ``filter_channels`` are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

from worker._run import is_process_local, load_layer_wrapper, run_worker

__all__ = ["Worker", "filter_channels", "is_process_local", "load_layer_wrapper", "run_worker"]

_LAZY = {"Worker": "worker._loop", "filter_channels": "worker._loop"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
