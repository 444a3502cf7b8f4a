"""tools/echo_server.py (the Autobahn and benchmark server): its replies give up on a
reply channel that stays full instead of waiting forever; its ``pair`` role keeps the
consumer in the interface's session and takes it down with it."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

from websockets.sync.client import connect

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


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(child) for child in f.read().split()]


def test_the_pair_role_runs_its_consumer_in_its_session_and_takes_it_down(tmp_path):
    # The benchmark's shmchannels server: interface here, consumer as a child in the same
    # session (as under the master); SIGTERM stops both and leaves no segment behind.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = f"echopair{os.getpid()}"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "echo_server.py"), str(port), "--layer", "shm",
                             "--shm-name", name, "--role", "pair"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=5) as ws:
                    ws.send("ping")
                    assert ws.recv(timeout=5) == "ping"
                break
            except OSError:
                assert time.monotonic() < deadline, "the pair never served"
                time.sleep(0.1)
        (consumer,) = _children(proc.pid)
        assert os.getsid(consumer) == os.getsid(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{consumer}") and open(f"/proc/{consumer}/stat").read().split()[2] != "Z":
            assert time.monotonic() < deadline, "the consumer outlived its interface"
            time.sleep(0.05)
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
