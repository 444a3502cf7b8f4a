"""The real children: the ChildSpec rows for interface servers and Django workers.

Each target runs in a freshly forked child. Imports of the interface and worker
packages happen there, not in the master, so a SIGHUP's new workers load the
project's new code and a broken import shows as a boot failure of that child.
"""

from __future__ import annotations

import logging
from typing import Any

from ._layer import build_layer, settings_values
from .arbiter import ChildContext, ChildSpec

__all__ = ["build_specs", "interface_options", "interface_target", "worker_target"]

#: Config settings the interface processes depend on: a change on SIGHUP restarts them.
INTERFACE_SETTINGS = (
    "bind", "http_timeout", "websocket_timeout", "websocket_connect_timeout", "ping_interval",
    "ping_timeout", "proxy_headers", "forwarded_allow_ips", "root_path", "accesslog",
    "graceful_timeout", "channel_layer", "django_settings", "user", "group",
)
_VERBOSITY = {"debug": 2, "info": 1}


def interface_options(config: Any) -> Any:
    """Build ``interface.Options`` from the master's config.

    Two values come from the Django settings module, as Channels 1.x's runserver took
    them: ``CHANNELS_WS_PROTOCOLS`` (accepted WebSocket subprotocols) and
    ``FORCE_SCRIPT_NAME`` (the root path when ``root_path`` is not set).
    """
    from interface import Options

    django = settings_values(config.settings_module, "CHANNELS_WS_PROTOCOLS", "FORCE_SCRIPT_NAME")
    return Options(
        ws_protocols=tuple(django.get("CHANNELS_WS_PROTOCOLS") or ()),
        http_timeout=config.http_timeout,
        websocket_timeout=config.websocket_timeout,
        websocket_connect_timeout=config.websocket_connect_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        proxy_headers=config.proxy_headers,
        forwarded_allow_ips=tuple(config.forwarded_allow_ips),
        root_path=config.root_path or django.get("FORCE_SCRIPT_NAME") or "",
        access_log=config.accesslog,
        graceful_timeout=config.graceful_timeout,
    )


def interface_target(ctx: ChildContext) -> int:
    """Serve HTTP and WebSockets on the inherited sockets until SIGTERM/SIGQUIT."""
    from interface import run_interface

    layer = build_layer(ctx.config.settings_module, ctx.config.channel_layer)
    return int(run_interface(layer, ctx.sockets, interface_options(ctx.config),
                             booted=ctx.booted, heartbeat=ctx.heartbeat) or 0)


def worker_target(ctx: ChildContext) -> int:
    """Boot Django and consume messages until SIGTERM/SIGQUIT or max_messages."""
    from worker import run_worker

    config = ctx.config
    return int(run_worker(
        alias=config.channel_layer,
        threads=config.worker_threads,
        max_messages=config.max_messages,
        max_messages_jitter=config.max_messages_jitter,
        booted=ctx.booted,
        heartbeat=ctx.heartbeat,
        verbosity=_VERBOSITY.get(config.loglevel, 0),
    ) or 0)


def build_specs(config: Any) -> list[ChildSpec]:
    """The ChildSpec table of a real deployment."""
    fingerprint = tuple(repr(getattr(config, name)) for name in INTERFACE_SETTINGS)
    logging.getLogger("shmchannels.master").debug("interface fingerprint %s", fingerprint)
    return [
        ChildSpec(kind="interface", count=config.interfaces, target=interface_target, timeout=config.timeout,
                  gets_listeners=True, fingerprint=fingerprint),
        ChildSpec(kind="worker", count=config.workers, target=worker_target, timeout=config.timeout,
                  gets_listeners=False, reload_always=True, scalable=True),
    ]
