"""systemd integration, against a real master: sd_notify datagrams and socket activation."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from supervisor._systemd import Notifier
from tests.supervisor.harness import Master


class NotifyListener:
    """The test's side of NOTIFY_SOCKET: a datagram socket collecting messages."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self) -> None:
        """Receive at most one datagram (0.2 s at most), so callers re-check their deadline."""
        try:
            self.messages.append(self.sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return

    def wait(self, field: str, timeout: float = 10.0, after: int = 0) -> int:
        """Wait for a message (index > after) with the line ``field``; returns its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(self.messages):
                if index >= after and field in message.split("\n"):
                    return index
            self.collect()
        raise AssertionError(f"no {field!r} after message {after} in {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


@pytest.fixture
def masters():
    started = []
    yield started
    for master in started:
        master.stop()


def test_ready_reloading_stopping_watchdog(tmp_path, notify, masters):
    env = {"FAKE_DIR": str(tmp_path), "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    master = Master(["-b", "127.0.0.1:0", "-w", "2"], env=env).start()
    masters.append(master)
    ready = notify.wait("READY=1")
    assert any(line.startswith("STATUS=") and "interfaces" in line for line in notify.messages[ready].split("\n"))
    # READY only once an interface and a worker have booted.
    assert "booted" in master.log() and master.log().index("Ready:") > master.log().index("booted")
    notify.wait("WATCHDOG=1", after=ready)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    master.signal(signal.SIGHUP)
    reloading = notify.wait("RELOADING=1", after=ready + 1)
    fields = dict(line.split("=", 1) for line in notify.messages[reloading].split("\n"))
    assert int(fields["MONOTONIC_USEC"]) >= before
    notify.wait("READY=1", after=reloading + 1)
    master.signal(signal.SIGTERM)
    notify.wait("STOPPING=1", after=reloading + 1)
    assert master.wait_exit() == 0
    events = (tmp_path / "events").read_text()
    assert "notify=None" in events and "notify=/" not in events  # children never see NOTIFY_SOCKET


def test_abstract_notify_socket(tmp_path, masters):
    name = f"shmchannels-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(10)
    try:
        master = Master(["-b", "127.0.0.1:0", "-w", "1"],
                        env={"FAKE_DIR": str(tmp_path), "NOTIFY_SOCKET": "@" + name}).start()
        masters.append(master)
        deadline = time.monotonic() + 10
        seen = ""
        while "READY=1" not in seen and time.monotonic() < deadline:
            seen += listener.recv(4096).decode()
        assert "READY=1" in seen
    finally:
        listener.close()


def test_watchdog_pid_mismatch_disables_pings():
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None
    notifier = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval == 0.5
    assert not notifier.enabled
    notifier.ready("x")  # a no-op without a socket, never an error


WRAPPER = """
import os, sys
fd = int(os.environ.pop("TEST_LISTEN_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_socket_activation_through_listen_fds(tmp_path, masters):
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    port = listening.getsockname()[1]
    inode = os.fstat(listening.fileno()).st_ino
    try:
        master = Master(["-b", "127.0.0.1:1", "--interfaces", "2", "-w", "1"],
                        env={"FAKE_DIR": str(tmp_path), "TEST_LISTEN_FD": str(listening.fileno())},
                        wrapper=WRAPPER, pass_fds=(listening.fileno(),)).start()
        masters.append(master)
        interfaces = master.wait_children("interface", 2)
        [worker] = master.wait_children("worker", 1)
        master.wait_log("Ready:")
        log = master.log()
        assert f"Listening on systemd socket 127.0.0.1:{port} (http)" in log
        assert "ignoring bind" in log
        assert "Listening at" not in log

        def socket_inodes(pid):
            inodes = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
            return inodes

        for pid in interfaces:
            assert inode in socket_inodes(pid)
        assert inode not in socket_inodes(worker)  # workers close the listeners
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
        # The socket unit's socket is still listening after the master is gone.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        listening.close()
