"""Switch a layer's path: Python reference only (the C fast path answers SLOW to
everything), or C with a count of the calls it handled itself."""

from __future__ import annotations

from typing import Any

import shmlayer
from shmlayer._fastpath import LAYOUT


class PythonPathOnly:
    """Stands in for a segment's ``FastPath``: the lock is real, send/receive go to Python."""

    def __init__(self, fast: Any) -> None:
        self._fast = fast

    def send(self, *args: Any) -> int:
        return int(LAYOUT["SLOW"])

    def send_group(self, *args: Any) -> int:
        return int(LAYOUT["SLOW"])

    def receive(self, *args: Any) -> int:
        return int(LAYOUT["SLOW"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fast, name)


def use_python_path(layer: shmlayer.ShmChannelLayer) -> None:
    segment = layer._current().segment
    segment.fast = PythonPathOnly(segment.fast)  # type: ignore[assignment]


class CountingFastPath:
    """Stands in for a segment's ``FastPath``: every call goes to C; ``handled`` counts,
    per operation, the calls C answered itself (anything but SLOW/SWEEP)."""

    def __init__(self, fast: Any) -> None:
        self._fast = fast
        self.handled = {"send": 0, "send_group": 0, "receive": 0}

    def _counted(self, op: str, *args: Any) -> Any:
        result = getattr(self._fast, op)(*args)
        if result not in (LAYOUT["SLOW"], LAYOUT["SWEEP"]):
            self.handled[op] += 1
        return result

    def send(self, *args: Any) -> Any:
        return self._counted("send", *args)

    def send_group(self, *args: Any) -> Any:
        return self._counted("send_group", *args)

    def receive(self, *args: Any) -> Any:
        return self._counted("receive", *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fast, name)


def count_fast_path(layer: shmlayer.ShmChannelLayer) -> CountingFastPath:
    """Wrap ``layer``'s FastPath so a test can check the C path really did the work."""
    segment = layer._current().segment
    counter = CountingFastPath(segment.fast)
    segment.fast = counter  # type: ignore[assignment]
    return counter
