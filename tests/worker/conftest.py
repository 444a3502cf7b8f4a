"""Worker tests: shorten the in-memory layer's blocking receive so stops are quick."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def short_block_timeout(monkeypatch):
    # A worker notices stop() when its blocking receive returns; 1 s per test adds up.
    import channels.layers.inmemory as inmemory

    monkeypatch.setattr(inmemory, "BLOCK_TIMEOUT", 0.2)
