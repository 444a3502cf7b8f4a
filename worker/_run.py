"""Booting a worker process: the entry point of the master and of ``runworker``.

Boot sequence (gunicorn's ``Worker.init_process`` order, for a Django worker):

1. ``django.setup()`` — settings, apps, logging;
2. load the layer wrapper of ``alias`` and refuse a layer that cannot span processes;
3. ``router.check_default()`` — Channels' default consumers below the user's routes
   (importing the routing here surfaces a broken consumer module before BOOTED);
4. ``worker_process_ready``, then ``booted()``;
5. ``Worker.run()`` until SIGTERM / SIGINT / SIGQUIT / max_messages / parent death.

Errors before BOOTED are logged with their traceback and turned into exit code 1; the
master sees a child that died without booting.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any, Callable, Sequence

__all__ = ["EXIT_BOOT_FAILED", "is_process_local", "load_layer_wrapper", "run_worker", "setup_logging"]

logger = logging.getLogger("django.channels.worker")

#: Exit code of a worker that could not boot (bad settings, routing, or layer).
EXIT_BOOT_FAILED = 1

_LEVELS = {0: logging.WARNING, 1: logging.INFO}


class WorkerConfigError(Exception):
    """The worker cannot run with this configuration (the message says why, in one line)."""


def setup_logging(verbosity: int, force: bool = False) -> None:
    """Send ``django.channels`` log records out once, at the level ``verbosity`` asks for.

    Channels 1.x ``runworker`` gave ``django.channels`` its own stderr handler and stopped
    propagation; so do we. In a child of the master whose root logger already has
    handlers, those handlers are reused instead, so each line appears once (propagating
    would also hit Django's DEBUG console handler on the ``django`` logger). A project
    that configured ``django.channels`` itself in LOGGING keeps its setup unless ``force``.

    Args:
        verbosity: 0 warnings, 1 info, 2+ debug (and one line per message).
        force: configure even if ``django.channels`` has handlers (management commands).
    """
    channels_logger = logging.getLogger("django.channels")
    channels_logger.setLevel(_LEVELS.get(verbosity, logging.DEBUG))
    ours = [handler for handler in channels_logger.handlers if getattr(handler, "_shmchannels_worker", False)]
    if ours or (channels_logger.handlers and not force):
        return
    root_handlers = logging.getLogger().handlers
    if root_handlers and not force:
        handlers = list(root_handlers)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
        handler._shmchannels_worker = True  # type: ignore[attr-defined]
        handlers = [handler]
    for handler in handlers:
        channels_logger.addHandler(handler)
    channels_logger.propagate = False


def is_process_local(layer: Any) -> bool:
    """True for a layer whose messages cannot leave this process (the in-memory layer)."""
    if getattr(layer, "process_local", False):
        return True
    try:
        from channels.layers.inmemory import InMemoryChannelLayer
    except ImportError:
        return False
    return isinstance(layer, InMemoryChannelLayer)


def load_layer_wrapper(alias: str) -> Any:
    """The ``ChannelLayerWrapper`` of ``alias`` with Channels' default routes added.

    Raises:
        WorkerConfigError: unknown alias, a bad layer config, a broken ROUTING, or a
            process-local layer (a worker process cannot share an in-memory layer with
            interface servers).
    """
    from django.core.exceptions import ImproperlyConfigured

    from channels.asgi import channel_layers

    try:
        wrapper = channel_layers[alias]
    except ImproperlyConfigured as exc:
        # A settings mistake (layer or ROUTING) is one line for the user, not a traceback.
        raise WorkerConfigError(str(exc)) from None
    if is_process_local(wrapper.channel_layer):
        raise WorkerConfigError(
            f"Channel layer {alias!r} is the in-memory layer, which cannot span processes: "
            "a separate worker would never see a message. Use the shm or Redis layer "
            "(CHANNEL_LAYERS BACKEND 'shmlayer.ShmChannelLayer'), or runserver, which runs "
            "worker threads in-process."
        )
    try:
        wrapper.router.check_default()
    except ImproperlyConfigured as exc:
        raise WorkerConfigError(str(exc)) from None
    return wrapper


def run_worker(
    alias: str = "default",
    threads: int = 1,
    only_channels: Sequence[str] | None = None,
    exclude_channels: Sequence[str] | None = None,
    max_messages: int = 0,
    max_messages_jitter: int = 0,
    booted: Callable[[], Any] | None = None,
    heartbeat: Callable[[], Any] | None = None,
    verbosity: int = 1,
) -> int:
    """Boot Django and run a worker in this (freshly forked) process.

    Args:
        alias: key of the layer in ``CHANNEL_LAYERS``.
        threads: consumer threads.
        only_channels: listen only on channels matching these globs.
        exclude_channels: never listen on channels matching these globs.
        max_messages: exit 0 after this many messages (0 = never).
        max_messages_jitter: random extra messages before that exit.
        booted: called once, when the worker is about to start consuming.
        heartbeat: called at least every second while the worker is healthy.
        verbosity: 0-3; 2 logs one line per message.

    Returns:
        The exit code: 0 after a stop, 1 if the worker could not boot.
    """
    parent = os.getppid()
    try:
        import django

        django.setup()
        setup_logging(verbosity)
        wrapper = load_layer_wrapper(alias)
        from channels.signals import worker_process_ready

        from worker._loop import Worker

        worker = Worker(
            wrapper, threads=threads, only_channels=only_channels, exclude_channels=exclude_channels,
            max_messages=max_messages, max_messages_jitter=max_messages_jitter, heartbeat=heartbeat,
            signal_handlers=True, verbosity=verbosity, parent_pid=parent,
        )
        if not worker.listen_channels():
            raise WorkerConfigError(worker.no_channels_message())
        worker_process_ready.send(sender=worker)
    except WorkerConfigError as exc:
        logging.getLogger("django.channels.worker").error("Worker cannot start: %s", exc)
        if not logging.getLogger("django.channels").handlers and not logging.getLogger().handlers:
            print(f"Worker cannot start: {exc}", file=sys.stderr)
        return EXIT_BOOT_FAILED
    except Exception:
        logger.exception("Worker failed to boot")
        if not logging.getLogger("django.channels").handlers and not logging.getLogger().handlers:
            import traceback

            traceback.print_exc()
        return EXIT_BOOT_FAILED
    # Django, the routing and the layer are loaded for good: take them out of the
    # collector's reach so full collections only walk what messages allocate (shorter
    # pauses, fewer slow responses at the tail).
    gc.freeze()
    if booted is not None:
        booted()
    try:
        return worker.run()
    finally:
        release_layer(wrapper, worker)


def release_layer(wrapper: Any, worker: Any) -> None:
    """Close the layer once a worker has run, unless a consumer thread is still inside it
    (after a quick stop): closing under it would fail that thread's last message."""
    close = getattr(wrapper.channel_layer, "close", None)
    if callable(close) and not worker.consumers_running():
        try:
            close()
        except Exception:
            logger.exception("Closing the channel layer failed")
