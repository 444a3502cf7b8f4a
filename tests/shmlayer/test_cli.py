"""``python -m shmlayer stats|flush|unlink`` on real segments."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import shmlayer

Make = Callable[..., shmlayer.ShmChannelLayer]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmlayer", *args], capture_output=True, text=True, timeout=30)


def test_stats_shows_channels_groups_memory_and_processes(make_layer: Make) -> None:
    layer = make_layer(capacity=1)
    layer.send("http.request", {"b": b"x" * 100})
    layer.group_add("chat", "interface.A!c1")
    layer.group_add("chat", "interface.A!c2")
    layer.send_group("chat", {})
    layer.send_group("chat", {})  # both members full: two counted drops
    layer.receive(["nothing"], block=False)
    out = run("stats", layer.segment_name)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "consistency: ok" in text
    assert "http.request" in text and "interface.A!c1" in text
    assert "chat" in text and "members      2" in text
    assert "memory: heap" in text and "group_skipped 2" in text
    assert "map the segment: " in text and str(os.getpid()) in text.split("map the segment:")[1].split(")")[0]
    data = json.loads(run("stats", layer.segment_name, "--json").stdout)
    assert data["global"]["n_group_skipped"] == 2
    assert {c["name"]: c["depth"] for c in data["channels"]}["http.request"] == 1


def test_flush_and_unlink(make_layer: Make) -> None:
    layer = make_layer(size=1 << 20, max_message_size=1000)  # smallest segment: inspectable too
    layer.send("x", {})
    assert run("stats", layer.segment_name).returncode == 0
    assert run("flush", layer.segment_name).returncode == 0
    assert layer.receive(["x"]) == (None, None)
    out = run("unlink", layer.segment_name)
    assert out.returncode == 0 and not os.path.exists(f"/dev/shm/{layer.segment_name}")
    assert run("unlink", layer.segment_name).returncode == 1


def test_clear_errors() -> None:
    out = run("stats", "no-such-segment-here")
    assert out.returncode == 1 and "no shm segment" in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists("/dev/shm/no-such-segment-here")
    out = run("stats", "bad/name")
    assert out.returncode == 2 and "Invalid segment name" in out.stderr
    assert run("flush").returncode == 2  # NAME required


def test_stats_never_writes_into_a_file_it_does_not_own() -> None:
    from .conftest import unique_name

    for content in (b"short but not ours", bytes(2 << 20)):  # foreign bytes; a never-finished segment
        name = unique_name("cli-foreign")
        path = f"/dev/shm/{name}"
        with open(path, "wb") as f:
            f.write(content)
        try:
            out = run("stats", name)
            assert out.returncode == 1 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
            with open(path, "rb") as f:
                assert f.read() == content  # stats only reads: size and bytes unchanged
        finally:
            os.unlink(path)


def test_negative_limit_is_a_usage_error() -> None:
    out = run("stats", "no-such-segment-here", "--limit", "-3")
    assert out.returncode == 2 and "--limit: must be 0 or more" in out.stderr and "Traceback" not in out.stderr


def _hold(name: str, holding: "multiprocessing.synchronize.Event") -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    with layer._hold_lock_for_test():
        holding.set()
        time.sleep(30)


def test_stats_and_flush_give_up_on_a_lock_held_too_long(make_layer: Make) -> None:
    layer = make_layer()
    layer.send("kept", {"n": 1})
    ctx = multiprocessing.get_context("fork")
    holding = ctx.Event()
    proc = ctx.Process(target=_hold, args=(layer.segment_name, holding), daemon=True)
    proc.start()
    try:
        assert holding.wait(10)
        os.kill(proc.pid, signal.SIGSTOP)  # a stopped holder: the lock never comes back by itself
        for command in ("stats", "flush"):
            out = run(command, layer.segment_name, "--lock-timeout", "0.3")
            assert out.returncode == 1, out.stdout + out.stderr
            assert f"still held after 0.3 s (by pid {proc.pid})" in out.stderr
            assert "Traceback" not in out.stderr
        for bad in ("0", "inf", "nan", "-1", "soon"):
            assert run("stats", layer.segment_name, "--lock-timeout", bad).returncode == 2, bad
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
    assert layer.receive(["kept"]) == ("kept", {"n": 1})  # the flush changed nothing
