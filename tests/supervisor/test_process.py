"""OS helpers: signal handler detection, parent-death signal, user lookup, fork discipline."""

from __future__ import annotations

import os
import signal
import time

import pytest

from supervisor import _process


def test_catches_signal_reads_proc():
    previous = signal.signal(signal.SIGUSR2, lambda *a: None)
    try:
        assert _process.catches_signal(os.getpid(), signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        assert not _process.catches_signal(os.getpid(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not _process.catches_signal(2**22 + 12345, signal.SIGUSR1)


def test_lookup_ids():
    assert _process.lookup_ids(None, None) == (None, None)
    assert _process.lookup_ids("0", "0") == (0, 0)
    assert _process.lookup_ids("root", None)[0] == 0
    with pytest.raises(KeyError, match="no such user: no-such-user-xyz"):
        _process.lookup_ids("no-such-user-xyz", None)
    with pytest.raises(KeyError, match="no such group: no-such-group-xyz"):
        _process.lookup_ids(None, "no-such-group-xyz")


def test_fork_child_exit_codes_and_tracebacks(capfd):
    pid = _process.fork_child(lambda: None, lambda: 7, os.getpid(), 1.0)
    assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 7

    def boom() -> int:
        raise ValueError("broken project")

    pid = _process.fork_child(lambda: None, boom, os.getpid(), 1.0)
    assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 1
    assert "ValueError: broken project" in capfd.readouterr().err


def test_parent_death_signal_reaches_the_grandchild(tmp_path):
    # middle forks a grandchild then dies; the grandchild must get SIGTERM.
    marker = tmp_path / "got-term"
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:
        def main() -> int:
            signal.signal(signal.SIGTERM, lambda *a: (marker.write_text("1"), os._exit(0)))
            os.write(write_fd, b"r")
            time.sleep(10)
            return 3

        _process.fork_child(lambda: None, main, os.getpid(), 1.0)
        os.read(read_fd, 1)  # the grandchild installed its handler
        os._exit(0)
    os.waitpid(middle, 0)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists()
