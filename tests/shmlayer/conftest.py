"""Fixtures for the shm layer tests: every segment gets a unique name and is unlinked."""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Iterator

import pytest

import shmlayer

_counter = itertools.count()


def unique_name(tag: str = "t") -> str:
    return f"shmch-ut-{tag}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def make_layer() -> Iterator[Callable[..., shmlayer.ShmChannelLayer]]:
    """``make_layer(**kwargs)``: a layer on a fresh 4 MiB segment; all unlinked afterwards."""
    made: list[shmlayer.ShmChannelLayer] = []

    def make(**kwargs: Any) -> shmlayer.ShmChannelLayer:
        kwargs.setdefault("name", unique_name())
        kwargs.setdefault("size", 4 << 20)
        kwargs.setdefault("max_message_size", 256 << 10)
        layer = shmlayer.ShmChannelLayer(**kwargs)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        layer.unlink()
    for layer in made:
        assert not os.path.exists(f"/dev/shm/{layer.segment_name}")


@pytest.fixture
def layer(make_layer: Callable[..., shmlayer.ShmChannelLayer]) -> shmlayer.ShmChannelLayer:
    return make_layer()
