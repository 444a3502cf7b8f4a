"""The interface server in its own process on the shared-memory layer, with the consumer in
this process (as a worker would be): HTTP, uploads, WebSockets, and layer loss (epoch)."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import signal
import subprocess
import time
from typing import Any, Iterator

import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from shmlayer import ShmChannelLayer

from .echo_app import EchoConsumer
from .test_server import _spawn, get

_names = itertools.count()


@pytest.fixture
def shm_interface() -> Iterator[tuple[Any, int, EchoConsumer, subprocess.Popen[bytes]]]:
    name = f"iftest{os.getpid()}x{next(_names)}"
    layer = ShmChannelLayer(name=name, size=16 * 1024 * 1024)
    consumer = EchoConsumer(layer).start()
    proc, port, _, _ = _spawn("--layer", "shm", "--shm-name", name, "--no-consumer")
    try:
        yield layer, port, consumer, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate()
        consumer.stop(wait=True)
        layer.unlink()
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass


def test_http_websocket_and_upload_over_shm(shm_interface):
    layer, port, consumer, _ = shm_interface
    assert get(port, "/hello") == (200, b"ok /hello")
    assert get(port, "/stream") == (200, b"one two three")
    payload = os.urandom(1024 * 1024 + 333)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("POST", "/body", body=payload)
    length, digest, _ = conn.getresponse().read().decode().split()
    conn.close()
    assert (int(length), digest) == (len(payload), hashlib.sha256(payload).hexdigest())
    with ws_connect(f"ws://127.0.0.1:{port}/shm") as ws:
        for message in ["a", "", b"\x00" * 1000, "é"]:
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_layer_loss_closes_websockets_with_1012(shm_interface):
    layer, port, consumer, _ = shm_interface
    with ws_connect(f"ws://127.0.0.1:{port}/epoch") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        consumer.stop(wait=True)
        layer.unlink()  # the segment is gone; whoever touches the layer next makes a new one
        ShmChannelLayer(name=layer.segment_name, size=16 * 1024 * 1024).close()
        started = time.monotonic()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1012 and time.monotonic() - started < 9  # checked every second
