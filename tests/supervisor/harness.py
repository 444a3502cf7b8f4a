"""Run a real master as a subprocess and watch it through /proc (shared by e2e tests).

Every wait has a hard deadline; ``stop()`` ends the master and then every child it
ever saw, by pid, and only if that pid still carries a shmchannels title (so a reused
pid of an unrelated process is never signalled).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cmdline(pid: int) -> str:
    """The process title (argv joined by spaces), or "" when the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(part) for part in handle.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str],
             interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``.

    ``what`` may be a callable, evaluated only on failure (to show the log as it is then).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


class Master:
    """A master subprocess.

    Args:
        args: command-line arguments.
        module: the module run with ``python -m`` (the fake master by default).
        env: extra environment variables.
        cwd: working directory (default: the repository).
        wrapper: python code run first (``-c``) that must exec the master itself; used to
            set LISTEN_PID to the master's own pid.
        pass_fds: fds the subprocess inherits.
    """

    def __init__(self, args: Iterable[str], module: str = "tests.supervisor.fake_master",
                 env: dict[str, str] | None = None, cwd: str | None = None, log_path: str | None = None,
                 wrapper: str | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        self.args = list(args)
        self.module = module
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("SHMCHANNELS_CMD_ARGS", None)
        self.env["PYTHONPATH"] = ROOT + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(env or {})
        self.cwd = cwd or ROOT
        self.log_path = log_path or f"/tmp/shmchannels-master-{os.getpid()}-{time.monotonic_ns()}.log"
        self.wrapper = wrapper
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def start(self) -> "Master":
        """Start the master; returns self."""
        command = [PYTHON, "-m", self.module, *self.args]
        if self.wrapper:
            command = [PYTHON, "-c", self.wrapper, *command]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, pass_fds=self.pass_fds)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """Everything the master and its children wrote so far."""
        with open(self.log_path, "rb") as handle:
            return handle.read().decode(errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the master."""
        os.kill(self.pid, signum)

    def children(self, kind: str | None = None) -> list[int]:
        """Live children, optionally of one kind (read from their process titles)."""
        pids = []
        for pid in children_of(self.pid):
            title = cmdline(pid)
            if not title.startswith("shmchannels:") or not alive(pid):
                continue
            self.seen.add(pid)
            if kind is None or title.split()[1] == kind:
                pids.append(pid)
        return sorted(pids)

    def wait_children(self, kind: str, count: int, timeout: float = 10.0,
                      exclude: Iterable[int] = ()) -> list[int]:
        """Wait until exactly ``count`` children of ``kind`` run (none of ``exclude``)."""
        excluded = set(exclude)

        def check() -> list[int] | None:
            pids = self.children(kind)
            return pids if len(pids) == count and not excluded & set(pids) else None

        return wait_for(check, timeout, lambda: f"{count} {kind} children (log:\n{self.log()[-3000:]})")  # type: ignore[return-value]

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log."""
        wait_for(lambda: self.log().count(text) >= count, timeout, lambda: f"{text!r} in the log:\n{self.log()[-3000:]}")

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the master to exit; returns its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Teardown: TERM, then KILL the master; KILL any child it left behind."""
        if self.proc is None:
            return
        self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in self.seen:
            if alive(pid) and cmdline(pid).startswith("shmchannels:"):
                os.kill(pid, signal.SIGKILL)
        self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
