"""The project's channel layer, as seen by the master: read from the settings module only.

The master never runs ``django.setup()``: it imports the settings module with importlib,
reads ``CHANNEL_LAYERS[alias]`` and builds the layer with the same code the workers use
(``channels.asgi.layer_from_config``), so the segment name, size and capacities are
identical in every process. That code reads no Django setting and imports no app.

The master needs the layer for two things: create the shm segment before forking (and
unlink it at a clean exit), and call ``discard_prefix`` when an interface process dies
so its connections' group memberships do not linger.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from typing import Any

__all__ = ["LayerError", "build_layer", "layer_entry", "project_name", "settings_values"]


class LayerError(Exception):
    """The settings module or its CHANNEL_LAYERS cannot be used; one-line message."""


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[key]) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib"))


def _forget_project_modules(before: set[str]) -> None:
    # Children are forked from the master: a project module left in sys.modules here
    # would be inherited, and a worker booted by SIGHUP would run the settings of the
    # day the master started. Library modules (stdlib, site-packages) may stay.
    libraries = _library_dirs()
    for name in set(sys.modules) - before:
        filename = getattr(sys.modules[name], "__file__", None)
        if filename and not os.path.realpath(filename).startswith(libraries):
            del sys.modules[name]


def _import_settings(settings_module: str) -> Any:
    # The project lives in the working directory, as with manage.py and gunicorn.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    before = set(sys.modules)
    try:
        return importlib.import_module(settings_module)
    except Exception as exc:
        raise LayerError(f"cannot import the settings module {settings_module!r}: {type(exc).__name__}: {exc}") from None
    finally:
        _forget_project_modules(before)


def layer_entry(settings_module: str | None, alias: str) -> dict[str, Any]:
    """Return ``CHANNEL_LAYERS[alias]`` of the settings module (the shm default if unset).

    Raises:
        LayerError: no settings module, it does not import, or the alias is missing.
    """
    if not settings_module:
        raise LayerError("no Django settings module: pass it as an argument, set django_settings "
                         "in the config file, or set DJANGO_SETTINGS_MODULE")
    module = _import_settings(settings_module)
    layers = getattr(module, "CHANNEL_LAYERS", None)
    if layers is None:
        return {"BACKEND": "shmlayer.ShmChannelLayer", "ROUTING": []}
    if not isinstance(layers, dict) or alias not in layers:
        raise LayerError(f"{settings_module}.CHANNEL_LAYERS has no layer {alias!r}")
    entry = layers[alias]
    if not isinstance(entry, dict):
        raise LayerError(f"{settings_module}.CHANNEL_LAYERS[{alias!r}] must be a dict")
    return entry


def settings_values(settings_module: str | None, *names: str) -> dict[str, Any]:
    """Read a few plain values from the settings module (those it defines).

    Raises:
        LayerError: the module does not import.
    """
    if not settings_module:
        return {}
    module = _import_settings(settings_module)
    return {name: getattr(module, name) for name in names if hasattr(module, name)}


def build_layer(settings_module: str | None, alias: str) -> Any:
    """Create (or attach to) the project's layer in this process.

    Raises:
        LayerError: the layer cannot be built, or it is an in-process layer (the in-memory
            layer cannot carry messages between the master's children).
    """
    entry = layer_entry(settings_module, alias)
    try:
        from channels.asgi import layer_from_config
    except ImportError as exc:
        raise LayerError(f"cannot load the channels package: {exc}") from None
    try:
        layer, _routing = layer_from_config(alias, entry)
    except Exception as exc:
        raise LayerError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if getattr(layer, "process_local", False) or type(layer).__name__ == "InMemoryChannelLayer":
        close = getattr(layer, "close", None)
        if callable(close):
            close()
        raise LayerError(
            f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer, which cannot span processes; use "
            "'shmlayer.ShmChannelLayer' (or Redis) with shmchannels, or 'manage.py runserver'"
        )
    return layer


def project_name(settings_module: str | None) -> str:
    """The default name in process titles: the settings module without ``.settings``."""
    if not settings_module:
        return "shmchannels"
    return settings_module[: -len(".settings")] if settings_module.endswith(".settings") else settings_module
