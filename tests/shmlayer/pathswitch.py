"""Run a layer on the Python reference path only (the C fast path answers SLOW to everything)."""

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
