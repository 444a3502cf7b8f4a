"""Small helpers shared by the channels modules."""

from __future__ import annotations

import importlib
import types
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["import_by_path", "name_that_thing"]


def name_that_thing(thing: Any) -> str:
    """A readable dotted name for a function, class, method or instance (for logs).

    Args:
        thing: anything.

    Returns:
        ``module.qualname`` where one exists, else the class's name plus ``instance``.
    """
    if isinstance(thing, types.MethodType):
        return f"{name_that_thing(thing.__self__)}.{thing.__func__.__name__}"
    if hasattr(thing, "__module__") and hasattr(thing, "__qualname__"):
        return f"{thing.__module__}.{thing.__qualname__}"
    wrapped = getattr(thing, "__wrapped__", None)
    if wrapped is not None:
        return name_that_thing(wrapped)
    cls = type(thing)
    return f"{cls.__module__}.{cls.__qualname__} instance"


def import_by_path(path: Any, what: str) -> Any:
    """Import ``"package.module.attribute"`` and return the attribute.

    Args:
        path: the dotted path.
        what: what the path names, for the error message (e.g. "consumer").

    Raises:
        ImproperlyConfigured: not a dotted str, or the module/attribute cannot be imported
            (the original error is part of the message and chained).
    """
    if not isinstance(path, str) or "." not in path:
        raise ImproperlyConfigured(f"{what} {path!r} must be a dotted path like 'package.module.name'")
    module_name, attribute = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Cannot import {what} {path!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ImproperlyConfigured(f"Cannot import {what} {path!r}: module {module_name!r} has no {attribute!r}") from exc
