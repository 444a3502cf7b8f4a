"""bench/redis_server.py: the one throwaway redis-server starter of tests and benchmarks.

Real redis-server processes on 127.0.0.1; every one is stopped by the helper, and each test
checks by pid that it is gone.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import _load
from bench import redis_server as rs

pytestmark = pytest.mark.redis


def _gone(pid: int) -> bool:
    """True once ``pid`` is no longer a live process (reaped, or a zombie at most)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def _config(server: rs.RedisServer, key: str) -> str:
    """``CONFIG GET key`` over a raw socket (RESP array of two bulk strings)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"CONFIG GET {key}\r\n".encode())
        data = b""
        while data.count(b"\r\n") < 5:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    return data.split(b"\r\n")[4].decode()


def test_server_answers_on_loopback_and_is_stopped_with_its_directory() -> None:
    with rs.redis_server("--maxmemory", "7mb", prefix="test-rs-") as server:
        assert server.host == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert rs.redis_answers(server.port)
        assert _config(server, "maxmemory") == str(7 * 1024 * 1024)  # extra arguments applied
        assert _config(server, "save") == ""  # no persistence
        workdir = Path(_config(server, "dir"))
        assert workdir.name.startswith("test-rs-") and workdir.is_dir()
        assert not _gone(server.pid)
    assert _gone(server.pid)
    assert not rs.redis_answers(server.port)
    assert not workdir.exists()


def test_server_is_stopped_when_the_block_raises() -> None:
    with pytest.raises(KeyError):
        with rs.redis_server() as server:
            raise KeyError("the caller failed")
    assert _gone(server.pid)


def test_a_server_that_cannot_start_is_a_clear_error_after_every_attempt() -> None:
    prefix = f"test-rs-bad-{os.getpid()}-"
    with pytest.raises(rs.RedisServerError, match=r"did not answer PING(.|\n)*maxmemory") as info:
        with rs.redis_server("--maxmemory", "not-a-size", prefix=prefix, attempts=2, timeout=5):
            pytest.fail("a server with a bad argument came up")
    assert "exit code 1" in str(info.value)  # it exited (the error is its own, not a timeout)
    assert not list(Path(tempfile.gettempdir()).glob(prefix + "*"))  # its directory removed


@pytest.fixture
def taken_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The race free_port() cannot exclude: its first pick is a port someone else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        picks = iter([busy])
        real_free_port = rs.free_port
        monkeypatch.setattr(rs, "free_port", lambda: next(picks, None) or real_free_port())
        yield busy


def test_a_port_taken_meanwhile_is_retried_on_a_new_one(taken_port: int) -> None:
    with rs.redis_server(attempts=2) as server:
        assert server.port != taken_port and rs.redis_answers(server.port)
    assert _gone(server.pid)


def test_a_taken_port_with_no_attempt_left_is_an_error(taken_port: int) -> None:
    with pytest.raises(rs.RedisServerError, match=f"port {taken_port} did not answer(.|\n)*in use"):
        with rs.redis_server(attempts=1):
            pytest.fail("came up on a taken port")


@pytest.mark.parametrize("kwargs, text", [
    ({"attempts": 0}, "attempts must be at least 1"),
    ({"timeout": 0}, "timeout must be more than 0"),
    ({"timeout": float("nan")}, "timeout must be more than 0"),
])
def test_bad_arguments_are_refused_before_anything_starts(kwargs: dict[str, float], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        with rs.redis_server(**kwargs):  # type: ignore[arg-type]
            pytest.fail("started anyway")


def test_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    monkeypatch.setattr(rs, "DEFAULT_BINARY", str(tmp_path / "redis-server"))
    with pytest.raises(rs.RedisServerError, match="make install"):
        with rs.redis_server():
            pytest.fail("started without a binary")


def test_port_that_answers_nothing_is_not_redis() -> None:
    assert not rs.redis_answers(rs.free_port())


def test_bench_wrapper_yields_the_url_and_stops_the_server() -> None:
    with _load.redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert url == f"redis://127.0.0.1:{port}/0" and rs.redis_answers(port)
    assert not rs.redis_answers(port)


def test_fixture_is_the_shared_helper(redis_server: rs.RedisServer) -> None:
    assert isinstance(redis_server, rs.RedisServer)
    assert rs.redis_answers(redis_server.port) and not _gone(redis_server.pid)
