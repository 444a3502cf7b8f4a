"""enforce_ordering under real concurrency: a Worker with two threads, a real sqlite file.

The tutorial's "Enforcing Ordering" consumer counts messages in the channel session; with
frames of several sockets sent back to back and two threads racing for them, every socket
must still see each socket's lines as ``1: ...``, ``2: ...``, ... in order, all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

SOCKETS, FRAMES = 4, 50


@pytest.fixture
def report():
    # tmpfs when there is one: every session save is a commit, and fsync on a disk would
    # make this test slow without making it any more real.
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="shmchannels-ordering-", dir=where) as tmp:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
               "SHMCHANNELS_TEST_DB": os.path.join(tmp, "db.sqlite3")}
        env.pop("SHMCHANNELS_TEST_LAYER", None)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = subprocess.run([sys.executable, "-m", "tests.channels.ordering_burst", str(SOCKETS), str(FRAMES)],
                             env=env, capture_output=True, text=True, timeout=100, cwd=root)
        assert out.returncode == 0, out.stderr[-3000:]
        yield json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_every_socket_sees_every_burst_in_order(report):
    result, log = report
    assert result["accepted"]
    assert "Traceback" not in log, log[-3000:]
    for prefix, lines in result["lines"].items():
        assert len(lines) == SOCKETS * FRAMES, (prefix, len(lines))
        for n in range(SOCKETS):
            mine = [line for line in lines if line.endswith(tuple(f" s{n}-{k}" for k in range(1, FRAMES + 1)))]
            assert mine == [f"{k}: s{n}-{k}" for k in range(1, FRAMES + 1)], (prefix, n, mine[:5])
