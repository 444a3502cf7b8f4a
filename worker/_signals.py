"""Signal handling of a worker process.

The table is gunicorn's worker table (operations.md §2.1):

=========  ===============================================================
SIGTERM    graceful: finish the message(s) being consumed, then exit 0
SIGINT     quick: exit at once (Ctrl-C), whatever is running
SIGQUIT    quick, as SIGINT (what the master sends for a fast stop)
=========  ===============================================================

Handlers only record the request and wake the monitor loop (gunicorn's arbiter and trio
do the minimum in a handler too); the monitor thread acts on it. Python runs handlers in
the main thread only, which is why the consumer loops run in their own threads and the
main thread stays free to notice a signal at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

__all__ = ["GRACEFUL_SIGNALS", "QUICK_SIGNALS", "install_signal_handlers"]

GRACEFUL_SIGNALS = (signal.SIGTERM,)
QUICK_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def install_signal_handlers(on_graceful: Callable[[], None], on_quick: Callable[[], None]) -> Callable[[], None]:
    """Route SIGTERM to ``on_graceful`` and SIGINT/SIGQUIT to ``on_quick``.

    Args:
        on_graceful: called (in the main thread) when SIGTERM arrives.
        on_quick: called (in the main thread) when SIGINT or SIGQUIT arrives.

    Returns:
        A function that puts the previous handlers back.

    Raises:
        RuntimeError: not called from the main thread (Python allows handlers only there).
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("Worker signal handlers can only be installed from the main thread")
    previous: dict[int, Any] = {}

    def graceful(signum: int, frame: Any) -> None:
        on_graceful()

    def quick(signum: int, frame: Any) -> None:
        on_quick()

    for signum in GRACEFUL_SIGNALS:
        previous[signum] = signal.signal(signum, graceful)
    for signum in QUICK_SIGNALS:
        previous[signum] = signal.signal(signum, quick)
    for signum in GRACEFUL_SIGNALS:
        # A blocking call in the main thread resumes after the handler instead of failing
        # with EINTR (PEP 475 already retries most calls; this covers the rest).
        signal.siginterrupt(signum, False)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    return restore
