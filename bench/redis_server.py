"""One throwaway redis-server on 127.0.0.1, for the test suite and the benchmarks alike.

It runs with no persistence on a free port in a private directory, is waited for until it
answers PING, and is always stopped by its own pid (TERM, then KILL): a Redis that someone
else started is never used or touched. Both ``tests/conftest.py`` (the session-wide
``redis_server`` fixture) and ``bench`` (``bench._load.redis_server``) start theirs here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
#: Where Debian's redis-server package puts the binary when it is not on PATH.
DEFAULT_BINARY = "/usr/bin/redis-server"


class RedisServerError(RuntimeError):
    """redis-server is not installed, or it did not come up and answer PING."""


@dataclass(frozen=True)
class RedisServer:
    """A redis-server started here: where it listens, its pid and its ``redis://`` URL (db 0)."""

    host: str
    port: int
    pid: int
    url: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it).

    Returns:
        The port number. Another process may take it before the caller binds it; callers
        that start a server on it retry with a new port when the server cannot bind.
    """
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def redis_answers(port: int, host: str = HOST) -> bool:
    """Whether a Redis at ``host:port`` answers PING with +PONG (within half a second).

    Args:
        port: the TCP port to ask.
        host: the address to ask (loopback by default).

    Returns:
        True on +PONG; False when nothing listens, the answer differs, or it is too slow.
    """
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str:
    """The redis-server executable to run.

    Returns:
        Its path: the one on PATH, else Debian's.

    Raises:
        RedisServerError: when neither exists.
    """
    binary = shutil.which("redis-server") or DEFAULT_BINARY
    if not os.path.exists(binary):
        raise RedisServerError("redis-server is not installed: run `make install` "
                               "(it installs the redis-server package)")
    return binary


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the server by its pid, then KILL it if it has not gone within 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _log_tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def _start(binary: str, workdir: Path, timeout: float, extra: tuple[str, ...]) -> tuple[subprocess.Popen[bytes], int]:
    """One try: start on a fresh free port, wait until it answers or dies; stop it if it never did."""
    port = free_port()
    # Its log goes to stdout; stderr too, where a bad argument is reported before any log.
    with open(workdir / "redis.log", "ab") as log:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--daemonize", "no", *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if redis_answers(port):
            return proc, port
        time.sleep(0.05)
    _stop(proc)
    raise RedisServerError(f"redis-server on port {port} did not answer PING within {timeout:g} s "
                           f"(exit code {proc.returncode}); its log ends:\n{_log_tail(workdir / 'redis.log')}")


@contextlib.contextmanager
def redis_server(*extra: str, prefix: str = "shmchannels-redis-", attempts: int = 3,
                 timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start a private redis-server on 127.0.0.1 and stop it (by pid) when the block ends.

    A try whose port was taken in the meantime (the server exits) is followed by another on
    a new port, up to ``attempts`` tries.

    Args:
        *extra: more redis-server command-line arguments (e.g. ``"--maxmemory", "1mb"``).
        prefix: name prefix of the temporary working directory (removed at the end).
        attempts: how many ports to try (at least 1).
        timeout: seconds each try may take to answer PING (more than 0).

    Yields:
        The running server's RedisServer.

    Raises:
        ValueError: ``attempts`` below 1 or ``timeout`` not above 0.
        RedisServerError: redis-server is missing, or no try came up (its log tail is in
            the message).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be more than 0 seconds, not {timeout!r}")
    binary = redis_binary()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for attempt in range(1, attempts + 1):
            try:
                proc, port = _start(binary, workdir, timeout, extra)
                break
            except RedisServerError:
                if attempt == attempts:
                    raise
        try:
            yield RedisServer(HOST, port, proc.pid, f"redis://{HOST}:{port}/0")
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
