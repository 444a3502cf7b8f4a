"""Small helpers shared by the layer conformance tests."""

from __future__ import annotations

from typing import Any


def drain(layer: Any, channels: list[str], limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
    """Receive (non-blocking) until the channels are empty; bounded."""
    got = []
    for _ in range(limit):
        channel, message = layer.receive(channels)
        if channel is None:
            return got
        got.append((channel, message))
    raise AssertionError(f"{channels} still not empty after {limit} messages")


def fill(layer: Any, channel: str, count: int) -> None:
    """Send ``count`` messages ``{"n": 0..count-1}`` to ``channel``."""
    for index in range(count):
        layer.send(channel, {"n": index})
