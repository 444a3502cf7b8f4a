"""Suite-wide setup: Django-using tests share one small settings module."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")


# --- a private redis-server for the Redis layer's tests (session-wide) -------------------
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402


@dataclass(frozen=True)
class RedisServer:
    """A redis-server this test session started: where it listens and its pid."""

    host: str
    port: int
    pid: int
    url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server():
    """Start a private redis-server on 127.0.0.1 (no persistence) and stop it by pid at the end.

    Never uses a Redis someone else started; `make install` provides /usr/bin/redis-server.
    """
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.fail("redis-server is not installed: run `make install` (it installs the redis-server package)")
    workdir = tempfile.mkdtemp(prefix="shmchannels-redis-")
    for _attempt in range(3):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log"), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None and not _redis_answers(port):
            time.sleep(0.05)
        if proc.poll() is None and _redis_answers(port):
            break
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    else:
        pytest.fail(f"redis-server did not start; see {workdir}/redis.log")
    try:
        yield RedisServer("127.0.0.1", port, proc.pid, f"redis://127.0.0.1:{port}/0")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
