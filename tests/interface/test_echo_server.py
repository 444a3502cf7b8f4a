"""tools/echo_server.py (the Autobahn and benchmark server): its replies give up on a
reply channel that stays full instead of waiting forever."""

from __future__ import annotations

import asyncio
import importlib.util
import os

from channels.layers.inmemory import InMemoryChannelLayer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_echo_server():
    spec = importlib.util.spec_from_file_location("echo_server", os.path.join(ROOT, "tools", "echo_server.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_reply_to_a_full_reply_channel_is_dropped_after_its_deadline():
    echo = load_echo_server()
    layer = InMemoryChannelLayer(capacity=1)
    message = {"reply_channel": "interface.X!1", "text": "hi", "bytes": None}
    assert asyncio.run(echo.reply(layer, "websocket.receive", message, retry_for=0.05)) is True
    # The one slot is taken now and nobody reads: the next reply gives up.
    assert asyncio.run(echo.reply(layer, "websocket.receive", message, retry_for=0.05)) is False
    assert layer.receive(["interface.X!"], block=False) == ("interface.X!1", {"text": "hi"})
    assert layer.receive(["interface.X!"], block=False) == (None, None)
