"""Worker processes: ``manage.py runworker`` and ``run_worker`` on a real shm layer.

Each test gets its own shm segment (a unique name) and its own sqlite file; every process
is started here, killed by its pid if still alive, and the segment is unlinked at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shmlayer import ShmChannelLayer
from shmlayer.contract import random_suffix

ROOT = Path(__file__).resolve().parents[2]
REPLIES = "test.replies"

pytestmark = pytest.mark.timeout(90)



class Proc:
    """A child process whose stderr lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.pid = self.popen.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 20.0) -> str:
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            if self.popen.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} from {self.args}; output:\n{self.output}")

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Stop the process by its pid (never by name); SIGKILL if SIGTERM is not enough."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._reader.join(5)


class ShmWorld:
    """One test's shm segment, environment and child processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.segment = "shmch-wt-" + random_suffix(10)
        self.db = tmp_path / "db.sqlite3"
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="tests.djangoproject.settings",
            SHMCHANNELS_TEST_LAYER="shm",
            SHMCHANNELS_TEST_SEGMENT=self.segment,
            SHMCHANNELS_TEST_ROUTING="tests.worker.routing.channel_routing",
            SHMCHANNELS_TEST_DB=str(self.db),
            PYTHONUNBUFFERED="1",
        )
        self.procs: list[Proc] = []
        self.layer = ShmChannelLayer(name=self.segment)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc([sys.executable, *args], env or self.env)
        self.procs.append(proc)
        return proc

    def runworker(self, *options: str) -> Proc:
        return self.spawn("-m", "django", "runworker", *options)

    def migrate(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def reply(self, channel: str = REPLIES, timeout: float = 15.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            _, message = self.layer.receive([channel], block=True)
            if message is not None:
                return message
        raise AssertionError(f"no message on {channel} within {timeout}s; worker output:\n"
                             + "\n---\n".join(proc.output for proc in self.procs))

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        self.layer.close()
        self.layer.unlink()


@pytest.fixture
def world(tmp_path):
    world = ShmWorld(tmp_path)
    try:
        yield world
    finally:
        world.close()


def test_runworker_refuses_the_in_memory_layer(tmp_path):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.djangoproject.settings",
               SHMCHANNELS_TEST_DB=str(tmp_path / "db.sqlite3"))
    env.pop("SHMCHANNELS_TEST_LAYER", None)
    done = subprocess.run([sys.executable, "-m", "django", "runworker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "in-memory layer" in lines[0] and "cannot span processes" in lines[0]


def test_runworker_rejects_bad_options(world):
    proc = world.runworker("--threads", "0")
    assert proc.wait(30) != 0
    assert "--threads must be at least 1" in proc.output
    proc = world.runworker("--layer", "nope")
    assert proc.wait(30) != 0
    assert "No channel layer 'nope'" in proc.output


def test_runworker_reports_a_broken_routing_in_one_line(world):
    proc = world.spawn("-m", "django", "runworker",
                       env=dict(world.env, SHMCHANNELS_TEST_ROUTING="tests.worker.nope.routing"))
    assert proc.wait(30) == 1
    lines = [line for line in proc.lines if line.strip()]
    assert len(lines) == 1, proc.output
    assert "Cannot import channel routing 'tests.worker.nope.routing'" in lines[0]


def test_runworker_consumes_and_logs_each_message_at_verbosity_2(world):
    proc = world.runworker("-v", "2", "--threads", "2")
    proc.wait_for_line(r"Listening on channels .*test\.echo")
    for n in range(3):
        world.layer.send("test.echo", {"reply_to": REPLIES, "n": n})
    world.layer.send("test.crash", {"n": 99})
    got = sorted(world.reply()["n"] for _ in range(3))
    assert got == [0, 1, 2]
    line = proc.wait_for_line(r"test\.echo -> tests\.worker\.routing\.echo [0-9.]+ms")
    assert "test.echo" in line
    proc.wait_for_line(r"RuntimeError: crash consumer asked to fail \(99\)")
    proc.wait_for_line(r"test\.crash -> tests\.worker\.routing\.crash [0-9.]+ms \(error\)")
    # The crash did not end the worker: it still answers.
    world.layer.send("test.echo", {"reply_to": REPLIES, "n": 7})
    assert world.reply()["n"] == 7
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(15) == 0


def test_only_and_exclude_channels(world):
    proc = world.runworker("--only-channels", "test.*", "--exclude-channels", "test.slow,test.crash")
    line = proc.wait_for_line(r"Listening on channels ")
    assert line.endswith("Listening on channels test.echo (1 thread)")
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(15) == 0


def test_sigterm_finishes_the_current_message(world):
    proc = world.runworker("-v", "1")
    proc.wait_for_line(r"Listening on channels")
    world.layer.send("test.slow", {"reply_to": REPLIES, "n": 1, "sleep": 1.5})
    world.layer.send("test.slow", {"reply_to": REPLIES, "n": 2, "sleep": 0})
    assert world.reply()["started"] == 1
    os.kill(proc.pid, signal.SIGTERM)
    assert world.reply()["finished"] == 1
    assert proc.wait(15) == 0
    # The message queued behind it was left for another worker.
    _, left = world.layer.receive(["test.slow"])
    assert left["n"] == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_quick_signals_exit_at_once(world, signum):
    proc = world.runworker()
    proc.wait_for_line(r"Listening on channels")
    world.layer.send("test.slow", {"reply_to": REPLIES, "n": 1, "sleep": 60})
    assert world.reply()["started"] == 1
    stopped = time.monotonic()
    os.kill(proc.pid, signum)
    assert proc.wait(15) == 0
    assert time.monotonic() - stopped < 10  # not the 60 s the consumer sleeps


RUN_WORKER = """
import sys
from worker import run_worker
beats = []
def booted():
    print("BOOTED", flush=True)
def heartbeat():
    if not beats:
        print("HEARTBEAT", flush=True)
    beats.append(1)
code = run_worker(threads=2, max_messages=4, booted=booted, heartbeat=heartbeat, verbosity=2)
print("EXIT", code, "BEATS", len(beats), flush=True)
sys.exit(code)
"""


def test_run_worker_boots_beats_and_exits_after_max_messages(world):
    proc = world.spawn("-c", RUN_WORKER)
    proc.wait_for_line("^BOOTED$")
    proc.wait_for_line("^HEARTBEAT$")
    for n in range(6):
        world.layer.send("test.echo", {"reply_to": REPLIES, "n": n})
    assert proc.wait(30) == 0
    line = proc.wait_for_line(r"^EXIT 0 BEATS \d+$")
    assert int(line.split()[-1]) >= 1
    replies = [world.reply()["n"] for _ in range(4)]
    assert len(set(replies)) == 4
    # 4 (or, with 2 threads, at most 5) were consumed; the rest wait for the next worker.
    left = []
    while True:
        _, message = world.layer.receive(["test.echo"])
        if message is None:
            break
        left.append(message["n"])
    assert 1 <= len(left) <= 2
    assert "Autorestarting worker after" in proc.output


def test_run_worker_refuses_the_in_memory_layer(tmp_path):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.djangoproject.settings",
               SHMCHANNELS_TEST_DB=str(tmp_path / "db.sqlite3"))
    env.pop("SHMCHANNELS_TEST_LAYER", None)
    done = subprocess.run([sys.executable, "-c", RUN_WORKER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "BOOTED" not in done.stdout
    assert "cannot span processes" in done.stderr


def test_tutorial_ordering_holds_across_two_worker_processes(world):
    """The Getting Started page's enforce_ordering consumer, with 2 worker processes x 2 threads."""
    world.env["SHMCHANNELS_TEST_ROUTING"] = "tests.djangoproject.routing.channel_routing"
    world.migrate()
    workers = [world.runworker("--threads", "2") for _ in range(2)]
    for proc in workers:
        proc.wait_for_line(r"Listening on channels")
    prefix = "interface.wt" + random_suffix(4) + "!"
    reply = prefix + "sock1"
    frames = 30
    headers = [[b"host", b"127.0.0.1"], [b"origin", b"http://127.0.0.1"]]
    world.layer.send("websocket.connect", {"reply_channel": reply, "path": "/ordering/", "order": 0,
                                           "headers": headers, "query_string": b""})
    assert world.reply(prefix) == {"accept": True}
    for order in range(1, frames + 1):
        world.layer.send("websocket.receive", {"reply_channel": reply, "path": "/ordering/", "order": order,
                                               "text": f"m{order}", "bytes": None})
    # The consumer counts frames in the channel session; out of order, the count and the
    # text would disagree ("3: m2").
    seen = [world.reply(prefix)["text"] for _ in range(frames)]
    assert seen == [f"{n}: m{n}" for n in range(1, frames + 1)]
    for proc in workers:
        os.kill(proc.pid, signal.SIGTERM)
    for proc in workers:
        assert proc.wait(15) == 0
