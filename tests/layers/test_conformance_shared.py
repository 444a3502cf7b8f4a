"""The one conformance suite, part 3: several handles and processes on one store.

Only for layers whose store another handle or process can open (``conftest.register_peer``:
shm, Redis); the in-memory layer lives in one process, so these tests are not generated for it. Peer processes run
``tests/layers/_peer.py`` and are killed at teardown if a test leaves them running.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.layers.conftest import LAYER_MARKS
from tests.layers.helpers import drain, fill

# ------------------------------------- several handles and processes on one store

#: Layers whose store a second handle or process opens (each registers a peer spec).
SHARED_STORE_LAYERS = ("shm", "redis")


@pytest.fixture(params=[pytest.param(name, marks=LAYER_MARKS.get(name, ()), id=name) for name in SHARED_STORE_LAYERS])
def layer_name(request: pytest.FixtureRequest) -> str:
    """Overrides conftest's: only the layers that can share their store."""
    return str(request.param)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def peers() -> Iterator[list[subprocess.Popen[str]]]:
    """Peer processes started by a test; any still running at teardown are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def start_peer(peers: list[subprocess.Popen[str]], spec: Any, actions: list[list[Any]]) -> subprocess.Popen[str]:
    payload = json.dumps({"layer": list(spec), "actions": actions})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.layers._peer", payload],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peers.append(proc)
    return proc


def finish_peer(proc: subprocess.Popen[str], timeout: float = 30) -> list[Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"peer process failed:\n{err}"
    return list(json.loads(out.strip().splitlines()[-1]))


def test_second_handle_shares_the_store(layer: Any, peer: Any) -> None:
    peer.send("share.test", {"from": "peer"})
    assert layer.receive(["share.test"]) == ("share.test", {"from": "peer"})
    peer.send("share.proc!c1", {"n": 1})
    assert layer.receive(["share.proc!"]) == ("share.proc!c1", {"n": 1})
    layer.group_add("share.group", "share.member")
    assert list(peer.group_channels("share.group")) == ["share.member"]
    peer.send_group("share.group", {"n": 2})
    assert layer.receive(["share.member"]) == ("share.member", {"n": 2})
    peer.group_discard("share.group", "share.member")
    assert list(layer.group_channels("share.group")) == []


def test_second_handle_sees_capacity_and_flush(layer: Any, peer: Any) -> None:
    fill(layer, "share.full", layer.capacity)
    with pytest.raises(peer.ChannelFull):
        peer.send("share.full", {})
    layer.group_add("share.flushed", "share.member")
    peer.flush()
    assert layer.receive(["share.full"]) == (None, None)
    assert list(layer.group_channels("share.flushed")) == []
    assert peer.epoch == layer.epoch


def test_message_from_another_process(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    proc = start_peer(
        peers,
        peer_spec,
        [["sleep", 0.2], ["send", "xp.in", {"n": 1}], ["send", "xp.proc!c", {"n": 2}], ["send", "xp.in", {"n": 3}]],
    )
    finish_peer(proc)
    assert drain(layer, ["xp.in"]) == [("xp.in", {"n": 1}), ("xp.in", {"n": 3})]
    assert layer.receive(["xp.proc!"]) == ("xp.proc!c", {"n": 2})


def test_blocking_receive_woken_by_another_process(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    proc = start_peer(peers, peer_spec, [["sleep", 0.3], ["send", "xp.block", {"n": 1}]])
    result: tuple[Any, Any] = (None, None)
    deadline = time.monotonic() + 20
    while result[0] is None and time.monotonic() < deadline:
        result = layer.receive(["xp.block"], block=True)
    assert result == ("xp.block", {"n": 1})
    finish_peer(proc)


def test_receive_async_woken_by_another_process(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    async def main() -> Any:
        start_peer(peers, peer_spec, [["sleep", 0.3], ["send", "xp.async!conn", {"n": 1}]])
        return await asyncio.wait_for(layer.receive_async(["xp.async!"], timeout=60), 20)

    assert asyncio.run(main()) == ("xp.async!conn", {"n": 1})
    finish_peer(peers[0])


def test_another_process_receives(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    proc = start_peer(peers, peer_spec, [["receive_block", ["xp.out"], 20]])
    time.sleep(0.3)
    layer.send("xp.out", {"n": 1, "b": "text"})
    assert finish_peer(proc) == [["xp.out", {"n": 1, "b": "text"}]]
    assert layer.receive(["xp.out"]) == (None, None)


def test_each_message_to_one_process_only(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    sent = [{"n": index} for index in range(90)]
    for message in sent:
        layer.send("xp.work", message)
    procs = [start_peer(peers, peer_spec, [["drain", ["xp.work"]]]) for _ in range(2)]
    got = [message for proc in procs for _channel, message in finish_peer(proc)[0]]
    assert sorted(message["n"] for message in got) == list(range(90))


def test_group_membership_from_another_process(layer: Any, peer_spec: Any, peers: list[Any]) -> None:
    finish_peer(start_peer(peers, peer_spec, [["group_add", "xp.group", "xp.member!a"]]))
    assert list(layer.group_channels("xp.group")) == ["xp.member!a"]
    layer.send_group("xp.group", {"n": 1})
    assert layer.receive(["xp.member!"]) == ("xp.member!a", {"n": 1})
