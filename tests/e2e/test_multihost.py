"""End to end across "hosts": two masters on one private Redis, as two machines would run.

Each master (``shmchannels --interfaces 1 --workers 1``) serves the test project on its
own port with the Redis layer selected by ``SHMCHANNELS_TEST_LAYER=redis`` and a prefix
of the test's own. WebSocket clients on host A and host B join the tutorial's ``/groups/``
chat (``Group("chat")``) and talk to each other through Redis; then host B goes away,
gracefully (SIGTERM to its master) or all at once (SIGKILL to every process of it), and
host A must lose nothing. Also: a Redis restart (sockets closed 1012, service back), and
the split shapes of docs/redis.md — edge hosts ``--workers 0`` with an application host
``--interfaces 0``, and the same without the master (``shmchannels-interface`` +
``runworker``). Processes are stopped by pid; the Redis prefix is flushed.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from channels.layers.redis import RedisChannelLayer
from tests.e2e.browser_helpers import descendant_pids, free_port, pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REPO_DIR = Path(__file__).resolve().parents[2]
SHMCHANNELS = Path(sys.executable).parent / "shmchannels"
BOOT_DEADLINE = 45.0
FRAME_TIMEOUT = 10.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Host:
    """One master of the test project on the shared Redis, started and stopped by pid."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"master-{name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: set[int] = set()

    def start(self, interfaces: int = 1, workers: int = 1, wait: bool = True) -> None:
        """Start the master; with ``wait``, return once ``/hello/`` answers through it."""
        args = [str(SHMCHANNELS), "--interfaces", str(interfaces), "--workers", str(workers), "-n", f"mh-{self.name}"]
        if interfaces:
            args += ["-b", f"127.0.0.1:{self.port}"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, cwd=REPO_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_serving()

    def wait_serving(self) -> None:
        """Wait until ``/hello/`` answers 200 on this host's port (a worker somewhere ran it)."""
        assert self.proc is not None
        deadline = time.monotonic() + BOOT_DEADLINE
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"master {self.name} exited while booting\n{self.log_tail()}"
            self.known.update(descendant_pids(self.proc.pid))
            try:
                with _OPENER.open(f"http://127.0.0.1:{self.port}/hello/", timeout=5) as response:
                    if response.status == 200:
                        self.known.update(descendant_pids(self.proc.pid))
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"master {self.name} did not serve /hello/ in {BOOT_DEADLINE:.0f} s\n{self.log_tail()}")

    def socket(self) -> ClientConnection:
        return chat_socket(self.port)

    def terminate(self) -> None:
        """Graceful stop: SIGTERM to the master, wait for it and its children."""
        assert self.proc is not None
        self.known.update(descendant_pids(self.proc.pid))
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        wait_for(lambda: not any(pid_alive(pid) for pid in self.known), 20, f"host {self.name}'s children to exit")

    def crash(self) -> None:
        """The host dies: SIGKILL to the master and every process below it at once."""
        assert self.proc is not None
        pids = [self.proc.pid, *descendant_pids(self.proc.pid)]
        self.known.update(pids)
        # Freeze them all first: killing the master alone lets PDEATHSIG's SIGTERM reach an
        # interface before its own SIGKILL, and a graceful close is not a crash.
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                os.kill(pid, signum)
        self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.known.update(descendant_pids(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.known:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def redis_env(redis_url: str, tmp_path: Path, prefix: str | None = None) -> dict[str, str]:
    """The environment of a process of the test project on Redis (``prefix``: its keys')."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
        "SHMCHANNELS_TEST_LAYER": "redis",
        "SHMCHANNELS_TEST_REDIS_URL": redis_url,
        "SHMCHANNELS_TEST_DB": str(tmp_path / "db.sqlite3"),
        "PYTHONUNBUFFERED": "1",
    })
    if prefix is not None:
        env["SHMCHANNELS_TEST_REDIS_PREFIX"] = prefix
    env.pop("SHMCHANNELS_CMD_ARGS", None)
    return env


@pytest.fixture
def hosts(redis_server: Any, tmp_path: Path) -> Iterator[tuple[Host, Host, RedisChannelLayer]]:
    """Hosts A and B (both booted) and a layer on the same Redis prefix to look inside."""
    prefix = f"mh-{secrets.token_hex(4)}:"
    env = redis_env(redis_server.url, tmp_path, prefix)
    a, b = Host("a", tmp_path, env), Host("b", tmp_path, env)
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=prefix)
    try:
        a.start()
        b.start()
        yield a, b, layer
    finally:
        a.cleanup()
        b.cleanup()
        layer.flush()
        layer.shards[0].client.delete(prefix + "epoch")
        layer.close()


def expect(ws: ClientConnection, text: str) -> None:
    """The next frame on ``ws`` is ``text`` (within FRAME_TIMEOUT)."""
    assert ws.recv(timeout=FRAME_TIMEOUT) == text


def chat_socket(port: int) -> ClientConnection:
    """A client of the tutorial's ``/groups/`` chat (``Group("chat")``) on ``port``."""
    return connect(f"ws://127.0.0.1:{port}/groups/", proxy=None, open_timeout=FRAME_TIMEOUT, close_timeout=2)


def join(host: Host | int, layer: RedisChannelLayer, members: int) -> ClientConnection:
    # The connect consumer accepts before it adds the socket to the group: wait until the
    # membership is in Redis, or an early broadcast could miss the new socket.
    ws = chat_socket(host if isinstance(host, int) else host.port)
    wait_for(lambda: len(layer.group_channels("chat")) >= members, 10, f"{members} member(s) in Group('chat')")
    return ws


def test_clients_on_two_hosts_chat_through_redis(hosts: tuple[Host, Host, RedisChannelLayer]) -> None:
    a, b, layer = hosts
    with join(a, layer, 1) as on_a, join(b, layer, 2) as on_b:
        members = layer.group_channels("chat")
        assert len({member.split("!")[0] for member in members}) == 2, "one reply channel per host's interface"
        on_a.send("hello from a")
        expect(on_a, "[user] hello from a")
        expect(on_b, "[user] hello from a")
        on_b.send("hello from b")
        expect(on_a, "[user] hello from b")
        expect(on_b, "[user] hello from b")


def test_graceful_stop_of_host_b_loses_nothing_on_a(hosts: tuple[Host, Host, RedisChannelLayer]) -> None:
    a, b, layer = hosts
    with join(a, layer, 1) as on_a:
        with join(b, layer, 2) as on_b:
            on_a.send("before")
            expect(on_a, "[user] before")
            expect(on_b, "[user] before")
            b.terminate()
        # B's interface closed its socket (disconnect consumer) and B's master discarded
        # its process channels: only A's socket is left in the group
        wait_for(lambda: len(layer.group_channels("chat")) == 1, 10, "B's member to leave Group('chat')")
        for index in range(20):
            on_a.send(f"after {index}")
        for index in range(20):
            expect(on_a, f"[user] after {index}")
        with join(a, layer, 2) as second:
            on_a.send("to the newcomer")
            expect(on_a, "[user] to the newcomer")
            expect(second, "[user] to the newcomer")


def test_host_b_dying_at_once_loses_nothing_on_a(hosts: tuple[Host, Host, RedisChannelLayer]) -> None:
    a, b, layer = hosts
    with join(a, layer, 1) as on_a:
        with join(b, layer, 2) as on_b:
            on_b.send("before")
            expect(on_a, "[user] before")
            expect(on_b, "[user] before")
            b.crash()
        # nobody discards B's reply channel: it stays a member, its copies queue up unread;
        # A's socket still gets every message, in order
        assert len(layer.group_channels("chat")) == 2
        for index in range(30):
            on_a.send(f"after {index}")
        for index in range(30):
            expect(on_a, f"[user] after {index}")
        with join(a, layer, 3) as second:
            second.send("still chatting")
            expect(on_a, "[user] still chatting")
            expect(second, "[user] still chatting")


def test_redis_restart_resets_sockets_and_service_recovers(tmp_path: Path) -> None:
    """Redis loses its data: the interface sees the new epoch, closes its sockets (1012),
    and clients that reconnect chat again — no socket is left silently deaf."""
    from tests.layers.test_redis import start_redis, stop_redis

    redis_port = free_port()
    proc = start_redis(redis_port, str(tmp_path))
    env = redis_env(f"redis://127.0.0.1:{redis_port}/0", tmp_path)
    host = Host("r", tmp_path, env)
    try:
        host.start()
        with host.socket() as ws:
            ws.send("before")
            expect(ws, "[user] before")
            stop_redis(proc)
            time.sleep(0.5)
            proc = start_redis(redis_port, str(tmp_path))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=FRAME_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, closed.value
        deadline = time.monotonic() + 30  # the interface may still be reconnecting to Redis
        while True:
            with host.socket() as again:
                again.send("after")
                try:
                    if again.recv(timeout=5) == "[user] after":
                        break
                except (TimeoutError, ConnectionClosed):
                    pass
            assert time.monotonic() < deadline, f"no chat after Redis came back\n{host.log_tail()}"
    finally:
        host.cleanup()
        stop_redis(proc)


class Proc:
    """One process of the split shape (an interface or a worker), started and stopped by pid."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def test_interface_only_and_worker_only_processes(redis_server: Any, tmp_path: Path) -> None:
    """The split shape without the master: two edge interfaces (``shmchannels-interface``)
    and a worker elsewhere (``manage.py runworker``); replacing the worker loses no socket."""
    prefix = f"mh-{secrets.token_hex(4)}:"
    env = redis_env(redis_server.url, tmp_path, prefix)
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=prefix)
    interface = str(Path(sys.executable).parent / "shmchannels-interface")
    ports = [free_port(), free_port()]
    procs = [Proc(f"edge{index}", [interface, "-b", "127.0.0.1", "-p", str(port), "tests.e2e.multihost_asgi:channel_layer"],
                  tmp_path, env) for index, port in enumerate(ports)]
    worker = Proc("worker1", [sys.executable, "-m", "django", "runworker"], tmp_path, env)
    procs.append(worker)
    try:
        def serving() -> bool:
            try:
                with _OPENER.open(f"http://127.0.0.1:{ports[0]}/hello/", timeout=5) as first, \
                        _OPENER.open(f"http://127.0.0.1:{ports[1]}/hello/", timeout=5) as second:
                    return first.status == second.status == 200
            except OSError:
                return False

        wait_for(serving, BOOT_DEADLINE, "both edges to serve /hello/ through the worker", interval=0.2)
        with join(ports[0], layer, 1) as one, join(ports[1], layer, 2) as two:
            one.send("across edges")
            expect(one, "[user] across edges")
            expect(two, "[user] across edges")
            worker.stop()
            procs.append(Proc("worker2", [sys.executable, "-m", "django", "runworker"], tmp_path, env))
            two.send("new worker")
            expect(one, "[user] new worker")
            expect(two, "[user] new worker")
    finally:
        for proc in procs:
            proc.stop()
        layer.flush()
        layer.shards[0].client.delete(prefix + "epoch")
        layer.close()


def test_interface_only_and_worker_only_hosts(redis_server: Any, tmp_path: Path) -> None:
    """docs/redis.md's split shape with the master: two edge hosts ``--workers 0`` and an
    application host ``--interfaces 0``; replacing the application host loses no socket."""
    prefix = f"mh-{secrets.token_hex(4)}:"
    env = redis_env(redis_server.url, tmp_path, prefix)
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=prefix)
    app, edge1, edge2 = Host("app", tmp_path, env), Host("edge1", tmp_path, env), Host("edge2", tmp_path, env)
    app2 = Host("app2", tmp_path, env)
    try:
        app.start(interfaces=0, workers=1, wait=False)
        edge1.start(interfaces=1, workers=0, wait=False)
        edge2.start(interfaces=1, workers=0, wait=False)
        edge1.wait_serving()  # answered by the application host's worker
        edge2.wait_serving()
        with join(edge1, layer, 1) as one, join(edge2, layer, 2) as two:
            one.send("edge to edge")
            expect(one, "[user] edge to edge")
            expect(two, "[user] edge to edge")
            app.terminate()
            app2.start(interfaces=0, workers=1, wait=False)
            two.send("new application host")
            expect(one, "[user] new application host")
            expect(two, "[user] new application host")
    finally:
        for host in (edge1, edge2, app, app2):
            host.cleanup()
        layer.flush()
        layer.shards[0].client.delete(prefix + "epoch")
        layer.close()
