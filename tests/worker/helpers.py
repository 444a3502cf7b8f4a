"""Shared helpers of the worker tests: a real in-memory layer and a Worker in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator

import django

django.setup()

from channels.asgi import ChannelLayerWrapper  # noqa: E402
from channels.layers.inmemory import InMemoryChannelLayer  # noqa: E402
from worker import Worker  # noqa: E402


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


def make_wrapper(routing: list[Any], **layer_kwargs: Any) -> ChannelLayerWrapper:
    """A real in-memory layer wrapped with ``routing`` (a list of route(...) entries)."""
    return ChannelLayerWrapper(InMemoryChannelLayer(**layer_kwargs), "default", routing)


class RunningWorker:
    """A Worker running in a thread; ``code`` is its exit code once it returned."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.worker.run()

    def join(self, timeout: float = 5.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not return in time"
        return self.code


@contextlib.contextmanager
def running(wrapper: ChannelLayerWrapper, **kwargs: Any) -> Iterator[RunningWorker]:
    """Run ``Worker(wrapper, signal_handlers=False, **kwargs)`` in a thread; stop it after."""
    handle = RunningWorker(Worker(wrapper, signal_handlers=False, **kwargs))
    handle.thread.start()
    try:
        yield handle
    finally:
        handle.worker.stop()
        handle.join(5)
