"""Start the real ``shmchannels`` master on the test Django project, on a free port.

The project (``tests/djangoproject``) runs on the shm layer with a segment of its own
(``SHMCHANNELS_TEST_LAYER=shm``, ``SHMCHANNELS_TEST_SEGMENT``) and the tutorial routing.
``RealMaster.stop()`` ends the master and every child it started, by pid, and removes
the segment and the test database.
"""

from __future__ import annotations

import glob
import http.client
import os
import secrets
import socket
import tempfile
from typing import Iterable

from tests.supervisor.harness import Master, free_port, wait_for

__all__ = ["RealMaster", "http_get", "project_env", "remove_segment", "socket_inodes", "wait_for"]


def project_env(segment: str, database: str | None = None) -> dict[str, str]:
    """Environment selecting the test project on a private shm segment."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
        "SHMCHANNELS_TEST_LAYER": "shm",
        "SHMCHANNELS_TEST_SEGMENT": segment,
        "SHMCHANNELS_TEST_DB": database or os.path.join(tempfile.gettempdir(), f"{segment}.sqlite3"),
    }


def remove_segment(segment: str) -> None:
    """Remove the segment (and any named semaphore of it) if a test left it behind."""
    for path in glob.glob(f"/dev/shm/{segment}*") + glob.glob(f"/dev/shm/sem.{segment}*"):
        try:
            os.unlink(path)
        except OSError:
            pass


def http_get(port: int, path: str = "/hello/", timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on 127.0.0.1; returns (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class RealMaster(Master):
    """The real master (``python -m supervisor``) serving the test project.

    Args:
        args: extra command-line arguments (``--interfaces 2 -w 2`` ...).
        env: extra environment.
    """

    def __init__(self, args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.segment = f"shmc-e2e-{os.getpid()}-{secrets.token_hex(3)}"
        self.database = os.path.join(tempfile.gettempdir(), f"{self.segment}.sqlite3")
        full_env = {**project_env(self.segment, self.database), **(env or {})}
        super().__init__(["-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "5", "--http-timeout", "5",
                          *args], module="supervisor", env=full_env)

    def wait_ready(self, timeout: float = 30.0) -> "RealMaster":
        """Wait for the master's READY and for the site to answer HTTP."""
        self.wait_log("Ready:", timeout=timeout)

        def answers() -> bool:
            try:
                return http_get(self.port, timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(answers, timeout, lambda: f"HTTP 200 from the site (log:\n{self.log()[-3000:]})", interval=0.1)
        return self

    def segment_exists(self) -> bool:
        """True while the layer's segment is in /dev/shm."""
        return os.path.exists(f"/dev/shm/{self.segment}")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        super().stop()
        remove_segment(self.segment)
        for path in (self.database, self.database + "-journal"):
            try:
                os.unlink(path)
            except OSError:
                pass


def tcp_connectable(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


#: Runs one management command of the test project. ``call_command`` with the command
#: object itself: with "django.contrib.staticfiles" listed before "channels" in
#: INSTALLED_APPS, ``manage.py runserver`` would find staticfiles' command first.
MANAGE_SCRIPT = """
import sys, django
django.setup()
from django.core.management import call_command
from importlib import import_module
name = sys.argv[1]
command = import_module("channels.management.commands." + name).Command()
call_command(command, *sys.argv[2:])
"""


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...)."""
    from tests.supervisor.harness import children_of

    found, queue = [], [pid]
    while queue:
        for child in children_of(queue.pop()):
            found.append(child)
            queue.append(child)
    return found


class ManageCommand:
    """A ``runserver``/``runworker`` subprocess of the test project; stopped by pid.

    Args:
        command: ``runserver`` or ``runworker``.
        args: its arguments.
        env: the project environment (``project_env``).
    """

    def __init__(self, command: str, args: Iterable[str], env: dict[str, str]) -> None:
        import subprocess

        from tests.supervisor.harness import ROOT

        self.log_path = os.path.join(tempfile.gettempdir(), f"shmc-{command}-{os.getpid()}-{secrets.token_hex(3)}.log")
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.pop("SHMCHANNELS_CMD_ARGS", None)
        full_env.update(PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        full_env.update(env)
        self.proc = subprocess.Popen(self.argv(command, args), cwd=ROOT,
                                     env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self.seen: set[int] = set()

    @staticmethod
    def argv(command: str, args: Iterable[str]) -> list[str]:
        """The command line that runs ``command`` (subclasses pick another launcher)."""
        import sys

        return [sys.executable, "-c", MANAGE_SCRIPT, command, *args]

    def log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode(errors="replace")

    def processes(self) -> list[int]:
        """Its live descendants (remembered for teardown)."""
        found = descendants(self.proc.pid)
        self.seen.update(found)
        return found

    def stop(self, timeout: float = 15.0) -> int | None:
        """TERM, wait, KILL; then KILL any descendant still alive. Returns the exit code."""
        import signal
        import subprocess

        from tests.supervisor.harness import alive

        self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in self.seen:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        return self.proc.returncode


def peer_ports(pid: int) -> set[int]:
    """Remote ports of the established IPv4 TCP connections process ``pid`` holds.

    Maps a client (its local port) to the interface process serving it.
    """
    inodes = socket_inodes(pid)
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if fields[3] == "01" and int(fields[9]) in inodes:  # 01 = ESTABLISHED
                ports.add(int(fields[2].split(":")[1], 16))
    return ports
