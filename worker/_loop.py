"""The worker: receive loops in threads, one monitor in the calling thread.

Theory of operation
-------------------
``Worker.run()`` starts ``threads`` consumer threads. Each one loops: blocking
``receive`` on the channels the router names (a layer gives up after ~1 s, so the loop
sees a stop request within about a second), then :func:`worker._dispatch.dispatch`.
The calling thread (the main thread in a worker process) is the *monitor*: it owns the
signal handlers, the heartbeat, the parent-death check and the layer epoch check, and
it decides the exit code. Keeping the consumers off the main thread is what lets
SIGINT/SIGQUIT end the process at once even while a consumer runs.

Heartbeat. ``heartbeat()`` tells the master "this worker is alive and not stuck". The
monitor calls it every :data:`BEAT_INTERVAL` seconds, and each consumer thread right after
a message, but only while no thread has been inside one consumer since before the previous
beat: a consumer that hangs stops the heartbeats and the master's timeout bounds its run
time (gunicorn's sync-worker timeout, operations.md §2.2). A thread waiting in
``receive`` is idle, hence healthy, so an idle worker beats every :data:`BEAT_INTERVAL`.

Stopping. ``stop()`` (SIGTERM, ``max_messages`` reached, parent gone) lets every thread
finish the message it holds and return; ``run()`` then returns 0. SIGINT/SIGQUIT make
``run()`` return at once; consumer threads are daemons and die with the process.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from worker._dispatch import DEFAULT_MESSAGE_RETRIES, dispatch, raw_layer
from worker._signals import install_signal_handlers

__all__ = ["BEAT_INTERVAL", "EXIT_CONFIG", "Worker", "filter_channels"]

logger = logging.getLogger("django.channels.worker")

#: Seconds between monitor heartbeats (the interface contract asks for at least 1/s).
BEAT_INTERVAL = 0.25
#: Exit code of a worker that cannot run as configured (no channel to listen on).
EXIT_CONFIG = 1


def filter_channels(
    channels: Iterable[str], only_channels: Sequence[str] | None = None, exclude_channels: Sequence[str] | None = None
) -> list[str]:
    """Apply ``--only-channels`` / ``--exclude-channels`` globs (fnmatch, case-sensitive).

    Args:
        channels: the channel names the router handles.
        only_channels: keep only names matching one of these globs (None/empty: keep all).
        exclude_channels: then drop names matching one of these globs.

    Returns:
        The remaining names, sorted.
    """
    names = sorted(set(channels))
    if only_channels:
        names = [name for name in names if any(fnmatch.fnmatchcase(name, glob) for glob in only_channels)]
    if exclude_channels:
        names = [name for name in names if not any(fnmatch.fnmatchcase(name, glob) for glob in exclude_channels)]
    return names


class _ThreadState:
    """What the monitor knows about one consumer thread (written by that thread only)."""

    __slots__ = ("busy_since",)

    def __init__(self) -> None:
        #: time.monotonic() when the current message was taken; None while receiving.
        self.busy_since: float | None = None


class Worker:
    """Consume messages from a channel layer and run their consumers.

    Args:
        channel_layer_wrapper: a ``channels.asgi.ChannelLayerWrapper`` (its ``router``
            names the channels and routes the messages).
        threads: consumer threads, each running a receive loop.
        only_channels: listen only on channels matching one of these globs.
        exclude_channels: do not listen on channels matching one of these globs.
        max_messages: exit (code 0) after this many messages; 0 = never. The master
            respawns the worker (gunicorn's ``max_requests``).
        max_messages_jitter: add ``randint(0, jitter)`` to ``max_messages`` so workers of
            one generation do not all restart at once.
        heartbeat: called at least every second while healthy (see module docstring).
        signal_handlers: install SIGTERM/SIGINT/SIGQUIT handlers in ``run()`` (False when
            the worker runs in a thread of another program, e.g. runserver).
        verbosity: 2 logs one line per message (channel, consumer, duration in ms).
        message_retries: how often ``ConsumeLater`` may put one message back.
        callback: Channels 1.x hook ``callback(channel, message)`` before each consumer.
        parent_pid: exit gracefully when the parent process is no longer this pid
            (the master died); None disables the check.
    """

    def __init__(
        self,
        channel_layer_wrapper: Any,
        threads: int = 1,
        only_channels: Sequence[str] | None = None,
        exclude_channels: Sequence[str] | None = None,
        max_messages: int = 0,
        max_messages_jitter: int = 0,
        heartbeat: Callable[[], Any] | None = None,
        signal_handlers: bool = True,
        verbosity: int = 1,
        message_retries: int = DEFAULT_MESSAGE_RETRIES,
        callback: Callable[[str, Any], Any] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive int, not {threads!r}")
        for name, value in (("max_messages", max_messages), ("max_messages_jitter", max_messages_jitter)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        self.channel_layer = channel_layer_wrapper
        self.threads = threads
        self.only_channels = list(only_channels or [])
        self.exclude_channels = list(exclude_channels or [])
        self.max_messages = max_messages + random.randint(0, max_messages_jitter) if max_messages else 0
        self.heartbeat = heartbeat
        self.signal_handlers = signal_handlers
        self.verbosity = verbosity
        self.message_retries = message_retries
        self.callback = callback
        self.parent_pid = parent_pid
        self.messages_handled = 0
        self._stopping = threading.Event()
        self._quit_now = threading.Event()
        self._wake = threading.Event()
        self._count_lock = threading.Lock()
        self._beat_lock = threading.Lock()
        self._last_beat = 0.0
        self._states: list[_ThreadState] = []
        self._exit_code = 0
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ control

    @property
    def layer(self) -> Any:
        """The raw layer object under the wrapper."""
        return raw_layer(self.channel_layer)

    def listen_channels(self) -> list[str]:
        """The channels this worker receives on: the router's, filtered by the globs."""
        return filter_channels(self.channel_layer.router.channels, self.only_channels, self.exclude_channels)

    def no_channels_message(self) -> str:
        """One line for the user when :meth:`listen_channels` is empty: what the routing
        names and what the filters kept."""
        return (
            f"No channels to listen on: routing names {', '.join(sorted(self.channel_layer.router.channels)) or 'none'}; "
            f"only channels {list(self.only_channels or []) or '-'}, exclude channels {list(self.exclude_channels or []) or '-'}"
        )

    def stop(self) -> None:
        """Graceful stop: finish the current message(s), then ``run()`` returns 0.

        Safe to call from any thread and more than once.
        """
        self._stopping.set()
        self._wake.set()

    def quit(self) -> None:
        """Quick stop: ``run()`` returns at once, abandoning messages being consumed."""
        self._quit_now.set()
        self.stop()

    def consumers_running(self) -> bool:
        """True while a consumer thread is still alive (after a quick stop, for instance).

        The layer must not be closed under a running thread: its mapping would vanish
        under a receive in progress.
        """
        return any(thread.is_alive() for thread in self._threads)

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""
        return self._stopping.is_set()

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Consume until stopped; returns the exit code.

        0 after a stop; 1 when there is nothing to listen on or a consumer thread was
        ended by ``SystemExit``/``KeyboardInterrupt``.

        Raises:
            RuntimeError: ``signal_handlers`` is True but this is not the main thread.
        """
        restore = install_signal_handlers(self._on_sigterm, self._on_sigquit) if self.signal_handlers else None
        try:
            channels = self.listen_channels()
            if not channels:
                logger.error("%s", self.no_channels_message())
                return EXIT_CONFIG
            logger.info("Listening on channels %s (%d thread%s)", ", ".join(channels), self.threads,
                        "" if self.threads == 1 else "s")
            from channels.signals import worker_ready

            worker_ready.send(sender=self)
            self._states = [_ThreadState() for _ in range(self.threads)]
            workers = [
                threading.Thread(target=self._consume_loop, args=(state, channels), daemon=True,
                                 name=f"channels-worker-{index}")
                for index, state in enumerate(self._states)
            ]
            self._threads = workers
            for thread in workers:
                thread.start()
            return self._monitor(workers)
        finally:
            if restore is not None:
                restore()

    def _monitor(self, workers: list[threading.Thread]) -> int:
        next_epoch_check = time.monotonic() + 1
        while True:
            if self._quit_now.is_set():
                logger.info("Quick shutdown: exiting without waiting for consumers")
                return 0
            if not any(thread.is_alive() for thread in workers):
                return self._exit_code
            if self.parent_pid is not None and os.getppid() != self.parent_pid and not self.stopping:
                logger.warning("Parent process %s is gone; shutting down", self.parent_pid)
                self.stop()
            now = time.monotonic()
            if now >= next_epoch_check:
                next_epoch_check = now + 1
                self._check_epoch()
            self._beat()
            self._wake.wait(BEAT_INTERVAL)
            self._wake.clear()

    def _check_epoch(self) -> None:
        # The shm layer re-attaches if its segment was re-created (INTERFACES: once a second).
        check = getattr(self.layer, "check_epoch", None)
        if check is None:
            return
        try:
            check()
        except ConnectionError as exc:
            logger.error("Channel layer epoch check failed: %s", exc)
        except Exception:
            logger.exception("Channel layer epoch check failed")

    def _beat(self) -> None:
        """Call ``heartbeat`` if every thread is idle or started its message after the last beat."""
        if self.heartbeat is None:
            return
        with self._beat_lock:
            last = self._last_beat
            for state in self._states:
                busy_since = state.busy_since
                if busy_since is not None and busy_since < last:
                    return  # a consumer has outlived a whole beat interval: let the master judge
            self._last_beat = time.monotonic()
            try:
                self.heartbeat()
            except Exception:
                logger.exception("Worker heartbeat callback failed")

    def _consume_loop(self, state: _ThreadState, channels: list[str]) -> None:
        try:
            self._receive_and_dispatch(state, channels)
        except BaseException as exc:
            # SystemExit/KeyboardInterrupt from a consumer (or a bug here) ends this thread:
            # stop the whole worker so the master starts a fresh one.
            logger.error("Consumer thread ended by %r; stopping the worker", exc,
                         exc_info=not isinstance(exc, SystemExit))
            self._exit_code = 1
            self.stop()

    def _receive_and_dispatch(self, state: _ThreadState, channels: list[str]) -> None:
        layer = self.layer
        log_each = self.verbosity >= 2
        while not self._stopping.is_set():
            asked = time.monotonic()
            try:
                channel, content = layer.receive(channels, block=True)
            except ConnectionError as exc:
                # A broker that is down (the Redis layer) is an operations problem, not a
                # bug: one line a second, not a traceback a second.
                logger.error("Channel layer unreachable (%s); retrying in 1 s", exc)
                self._stopping.wait(1)
                continue
            except Exception:
                logger.exception("Receiving from the channel layer failed; retrying in 1 s")
                self._stopping.wait(1)
                continue
            if channel is None or content is None:
                if time.monotonic() - asked < 0.005:
                    # A layer that ignores block=True must not make this a busy loop.
                    self._stopping.wait(0.01)
                continue
            state.busy_since = time.monotonic()
            try:
                dispatch(
                    self.channel_layer, channel, content, sender=type(self),
                    message_retries=self.message_retries, callback=self.callback, log_each=log_each,
                )
            except Exception:
                # dispatch contains consumer failures; this is a failure of the worker's own
                # machinery (e.g. routing objects): log it and keep the thread alive.
                logger.exception("Worker failed to dispatch a message on %s", channel)
            finally:
                state.busy_since = None
            self._count_message()
            self._beat()

    def _count_message(self) -> None:
        with self._count_lock:
            self.messages_handled += 1
            reached = self.max_messages and self.messages_handled >= self.max_messages
        if reached and not self.stopping:
            logger.info("Autorestarting worker after %d messages", self.messages_handled)
            self.stop()

    # ------------------------------------------------------------------ signals

    def _on_sigterm(self) -> None:
        busy = any(state.busy_since is not None for state in self._states)
        logger.info("SIGTERM: %s", "finishing the current message(s), then exiting" if busy else "exiting")
        self.stop()

    def _on_sigquit(self) -> None:
        self.quit()
