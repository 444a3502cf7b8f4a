"""Waiting out ``ChannelFull``: the one back-off loop replies and held sends share."""

from __future__ import annotations

import time
from typing import Callable


def retry_while_full(
    attempt: Callable[[], None], full: type[BaseException], deadline: float, first_delay: float, max_delay: float
) -> bool:
    """Call ``attempt`` until it does not raise ``full``, sleeping with a doubling back-off.

    Args:
        attempt: sends one message; raises ``full`` when the channel is full.
        full: the layer's ChannelFull class.
        deadline: ``time.monotonic()`` value after which to give up.
        first_delay: seconds of the first sleep.
        max_delay: longest single sleep.

    Returns:
        True once ``attempt`` succeeded; False if the channel was still full at ``deadline``.
    """
    delay = first_delay
    while True:
        try:
            attempt()
            return True
        except full:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay)
