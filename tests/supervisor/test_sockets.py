"""Binding listeners: TCP, IPv6, unix sockets (stale files), fd://, errors."""

from __future__ import annotations

import os
import socket

import pytest

from supervisor._sockets import BindError, bind_all, bind_one, close_all, describe


def test_tcp_bind_and_describe():
    listener = bind_one("127.0.0.1:0")
    try:
        host, port = listener.sock.getsockname()
        assert describe(listener.sock) == f"127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        close_all([listener])


def test_unix_socket_replaces_a_stale_socket_but_not_a_file(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays behind, as after a crash
    listener = bind_one(f"unix:{path}", umask=0o077)
    assert describe(listener.sock) == f"unix:{path}"
    assert path.stat().st_mode & 0o777 == 0o700
    close_all([listener])
    assert not path.exists()
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(BindError, match="cannot listen on unix:"):
        bind_one(f"unix:{regular}")
    assert regular.read_text() == "not a socket"


def test_address_in_use_is_a_bind_error_and_earlier_sockets_are_closed():
    taken = bind_one("127.0.0.1:0")
    port = taken.sock.getsockname()[1]
    try:
        with pytest.raises(BindError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            bind_all(["127.0.0.1:0", f"127.0.0.1:{port}"])
    finally:
        close_all([taken])


def test_fd_address():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    fd = os.dup(sock.fileno())
    sock.close()
    listener = bind_one(f"fd://{fd}")
    assert listener.sock.fileno() == fd
    close_all([listener])
    with pytest.raises(BindError, match="not an open socket"):
        bind_one(f"fd://{fd}")
