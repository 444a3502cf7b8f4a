"""The ``shmchannels-interface`` command: argument errors, unix sockets, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from interface.cli import UsageError, load_layer, make_sockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMAND = [sys.executable, "-m", "interface.cli"]


@pytest.mark.parametrize("path, message", [
    ("nocolon", "module.path:attribute"),
    ("no_such_module_xyz:layer", "cannot import 'no_such_module_xyz'"),
    ("tests.interface.layer_for_cli:missing", "has no attribute 'missing'"),
    ("tests.interface.layer_for_cli:not_a_layer", "is not a channel layer"),
])
def test_bad_layer_path_is_one_line_error_and_exit_1(path, message):
    result = subprocess.run([*COMMAND, path], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_load_layer_and_make_sockets_in_process():
    layer = load_layer("tests.interface.layer_for_cli:channel_layer")
    assert "asyncio" in layer.extensions
    sockets = make_sockets("127.0.0.1", 0, None, [])
    try:
        assert sockets[0].getsockname()[0] == "127.0.0.1"
    finally:
        for sock in sockets:
            sock.close()
    sockets = make_sockets("127.0.0.1:0", None, None, [])  # gunicorn-style HOST:PORT
    try:
        assert sockets[0].getsockname()[0] == "127.0.0.1"
    finally:
        sockets[0].close()
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(UsageError):
            make_sockets("127.0.0.1", busy.getsockname()[1], None, [])
    finally:
        busy.close()


def test_serves_a_unix_socket_and_stops_on_sigterm(tmp_path):
    path = str(tmp_path / "iface.sock")
    proc = subprocess.Popen([*COMMAND, "-u", path, "--http-timeout", "0.5", "-v", "0",
                             "tests.interface.layer_for_cli:channel_layer"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # No worker reads the in-memory layer of that process: the http_timeout answers.
            assert sock.recv(1024).startswith(b"HTTP/1.1 503 ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
