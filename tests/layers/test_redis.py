"""Redis-specific behaviour of channels.layers.redis (the shared contract is in test_conformance).

Everything runs against real redis-server processes: the session's private one
(``redis_server``), and for the tests that stop, freeze or fill a server, one started
here and stopped by pid. Two shards are simulated by two databases of one server
(separate keyspaces, exactly what the layer sees of two hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterator

import pytest
import redis

from channels.layers._redis_shards import shard_index
from channels.layers.redis import RedisChannelLayer, RedisLayerConnectionError
from shmlayer.contract import ChannelFull
from bench.redis_server import free_port, redis_answers

pytestmark = pytest.mark.redis

_counter = itertools.count()


@pytest.fixture
def make(redis_server: Any) -> Iterator[Any]:
    """``make(**kwargs)``: a layer on the private server with a fresh prefix, flushed after."""
    made: list[RedisChannelLayer] = []

    def factory(**kwargs: Any) -> RedisChannelLayer:
        kwargs.setdefault("hosts", [redis_server.url])
        kwargs.setdefault("prefix", f"tr-{os.getpid()}-{next(_counter)}:")
        layer = RedisChannelLayer(**kwargs)
        made.append(layer)
        return layer

    yield factory
    for layer in made:
        layer.flush()
        for shard in layer.shards:
            shard.client.delete(layer.prefix + "epoch")
        layer.close()


def _keys(server: Any, prefix: str, db: int = 0) -> list[str]:
    client = redis.Redis(host=server.host, port=server.port, db=db)
    try:
        return sorted(key.decode() for key in client.keys(prefix + "*"))
    finally:
        client.close()


@contextlib.contextmanager
def own_redis(*extra: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server only this test uses (so it may stop, freeze or fill it); stopped by pid."""
    workdir = tempfile.mkdtemp(prefix="shmchannels-redis-t-")
    port = free_port()
    proc = start_redis(port, workdir, *extra)
    try:
        yield port, proc
    finally:
        stop_redis(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def start_redis(port: int, workdir: str, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_answers(port):
        assert proc.poll() is None and time.monotonic() < deadline, "test redis-server did not start"
        time.sleep(0.05)
    return proc


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"hosts": ["http://x"]}, "redis://"),
        ({"hosts": [("h", "6379")]}, "(host, port)"),
        ({"hosts": []}, "non-empty"),
        ({"prefix": ""}, "prefix"),
        ({"socket_timeout": 0.5}, "socket_timeout"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"symmetric_encryption_keys": "one-key"}, "list"),
        ({"sentinels": []}, "Unknown RedisChannelLayer option"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(TypeError, match=text.replace("(", r"\(").replace(")", r"\)")):
        RedisChannelLayer(**kwargs)


def test_url_password_never_in_errors_or_repr() -> None:
    layer = RedisChannelLayer(hosts=["redis://:s3cret@127.0.0.1:1/0"], connect_timeout=0.5)
    assert "s3cret" not in repr(layer)
    with pytest.raises(RedisLayerConnectionError) as info:
        layer.send("x", {})
    assert "s3cret" not in str(info.value)
    layer.close()


def test_encryption_without_cryptography_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # simulate the package being absent: a None entry makes the import raise ImportError
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ImportError, match="pip install cryptography"):
        RedisChannelLayer(symmetric_encryption_keys=["k"])


# ------------------------------------------------------------------ key layout


def test_process_channels_share_one_queue_key(make: Any, redis_server: Any) -> None:
    layer = make()
    for local in ("a", "b", "c"):
        layer.send(f"daphne.response.X!{local}", {"local": local})
    queues = [key for key in _keys(redis_server, layer.prefix) if ":q:" in key]
    assert queues == [f"{layer.prefix}q:daphne.response.X!"]
    got = [layer.receive(["daphne.response.X!"])[0] for _ in range(3)]
    assert got == ["daphne.response.X!a", "daphne.response.X!b", "daphne.response.X!c"]


def test_received_message_leaves_no_keys_behind(make: Any, redis_server: Any) -> None:
    layer = make()
    layer.send("clean.test", {"a": 1})
    layer.group_add("room", "p!x")
    layer.send_group("room", {"b": 2})
    assert layer.receive(["clean.test"])[0] == "clean.test"
    assert layer.receive(["p!"])[0] == "p!x"
    left = {key.split(":", 1)[1].split(":")[0] for key in _keys(redis_server, layer.prefix)}
    # only bookkeeping remains: group, reverse index, counters, id counter, epoch-free
    assert left <= {"g", "cg", "pg", "cs", "stats", "seq", "n"}
    assert not any(":m:" in key or ":w:" in key for key in _keys(redis_server, layer.prefix))


def test_flush_touches_only_its_prefix_and_keeps_the_epoch(make: Any) -> None:
    one, two = make(), make()
    epoch = one.epoch
    one.send("f.test", {"n": 1})
    two.send("f.test", {"n": 2})
    one.flush()
    assert one.receive(["f.test"]) == (None, None)
    assert two.receive(["f.test"]) == ("f.test", {"n": 2})
    assert one.check_epoch() == epoch


def test_epoch_changes_when_redis_loses_its_data(make: Any, redis_server: Any) -> None:
    layer = make()
    epoch = layer.epoch
    assert layer.check_epoch() == epoch
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.delete(*client.keys(layer.prefix + "*"))  # what a restart without persistence does
    client.close()
    assert layer.check_epoch() != epoch
    assert layer.epoch == layer.check_epoch()


# ------------------------------------------------------------------ encryption


def test_encrypted_bodies_at_rest(make: Any, redis_server: Any) -> None:
    layer = make(symmetric_encryption_keys=["first-key"])
    layer.send("enc.test", {"secret": "plain-text-marker"})
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    [body_key] = [key for key in client.keys(layer.prefix + "m:*")]
    stored = client.hget(body_key, "body:")
    client.close()
    assert b"plain-text-marker" not in stored
    assert layer.receive(["enc.test"]) == ("enc.test", {"secret": "plain-text-marker"})


def test_key_rotation_and_wrong_key(make: Any) -> None:
    old = make(symmetric_encryption_keys=["old"])
    rotated = make(prefix=old.prefix, symmetric_encryption_keys=["new", "old"])
    stranger = make(prefix=old.prefix, symmetric_encryption_keys=["other"])
    old.send("rot.test", {"n": 1})
    assert rotated.receive(["rot.test"]) == ("rot.test", {"n": 1})
    old.send("rot.test", {"n": 2})
    with pytest.raises(ValueError, match="could not be decrypted"):
        stranger.receive(["rot.test"])


# ------------------------------------------------------------------ sharding


def test_jump_hash_is_stable_and_moves_few_keys() -> None:
    names = [f"channel.{index}" for index in range(2000)]
    three = [shard_index(name, 3) for name in names]
    assert three == [shard_index(name, 3) for name in names]
    assert all(three.count(index) > 500 for index in range(3))
    four = [shard_index(name, 4) for name in names]
    moved = sum(a != b for a, b in zip(three, four))
    assert moved < 0.35 * len(names)  # ideal 1/4; mod-N hashing would move ~3/4
    assert all(b == 3 for a, b in zip(three, four) if a != b)


@pytest.fixture
def sharded(make: Any, redis_server: Any) -> RedisChannelLayer:
    """A layer with two shards: databases 1 and 2 of the private server."""
    base = f"redis://{redis_server.host}:{redis_server.port}"
    return make(hosts=[base + "/1", base + "/2"])


def test_sharded_channels_groups_and_process_channels(sharded: RedisChannelLayer, redis_server: Any) -> None:
    layer = sharded
    names = [f"shard.{index}" for index in range(20)]
    for name in names:
        layer.send(name, {"name": name})
    for db in (1, 2):
        assert any(":q:shard." in key for key in _keys(redis_server, layer.prefix, db)), "both shards used"
    got = {}
    for _ in names:
        channel, message = layer.receive(names)
        got[channel] = message["name"]
    assert got == {name: name for name in names}
    # replies of one process live on one shard, whatever their local parts
    for local in range(10):
        layer.send(f"iface.P!{local}", {"n": local})
    shards = {db for db in (1, 2) if any("iface" in key for key in _keys(redis_server, layer.prefix, db))}
    assert len(shards) == 1
    assert [layer.receive(["iface.P!"])[1]["n"] for _ in range(10)] == list(range(10))
    # a group reaches members on both shards
    members = [f"member.{index}" for index in range(8)] + ["iface.Q!a"]
    for member in members:
        layer.group_add("lobby", member)
    assert sorted(layer.group_channels("lobby")) == sorted(members)
    layer.send_group("lobby", {"hello": True})
    for member in members:
        queue = member if "!" not in member else "iface.Q!"
        assert layer.receive([queue]) == (member, {"hello": True})
    layer.discard_prefix("iface.Q!")
    assert "iface.Q!a" not in layer.group_channels("lobby")


def test_sharded_expired_member_leaves_group_on_other_shard(make: Any, redis_server: Any) -> None:
    base = f"redis://{redis_server.host}:{redis_server.port}"
    layer = make(hosts=[base + "/1", base + "/2"], expiry=1)
    group = "far.group"
    channel = next(f"far.{i}" for i in range(100) if shard_index(f"far.{i}", 2) != shard_index(group, 2))
    layer.group_add(group, channel)
    layer.send_group(group, {"n": 1})
    time.sleep(1.2)
    layer.send_group(group, {"n": 2})
    assert layer.group_channels(group) == []
    assert layer.receive([channel]) == (None, None)


def test_sharded_blocking_receives_wake(sharded: RedisChannelLayer) -> None:
    layer = sharded
    names = [f"wake.{index}" for index in range(6)]
    threading.Timer(0.2, layer.send, args=(names[-1], {"late": 1})).start()
    deadline = time.monotonic() + 5
    got: tuple[Any, Any] = (None, None)
    while got == (None, None) and time.monotonic() < deadline:
        got = layer.receive(names, block=True)
    assert got == (names[-1], {"late": 1})

    async def main() -> Any:
        waiter = asyncio.ensure_future(layer.receive_async(names, timeout=5))
        await asyncio.sleep(0.2)
        layer.send(names[0], {"late": 2})
        return await waiter

    assert asyncio.run(main()) == (names[0], {"late": 2})


# ------------------------------------------------------------------ waiting without spinning


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_blocking_receive_does_not_spin(make: Any, redis_server: Any) -> None:
    layer = make()
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    before = _evalsha_calls(client)
    assert layer.receive(["idle.test", "idle.p!"], block=True) == (None, None)
    assert _evalsha_calls(client) - before <= 3  # one attempt, one BLPOP, one last attempt
    client.close()


def test_async_waiters_use_no_threads(make: Any) -> None:
    layer = make()

    async def main() -> list[Any]:
        waiters = [asyncio.ensure_future(layer.receive_async([f"aw.{i}"], timeout=3)) for i in range(30)]
        await asyncio.sleep(0.3)
        threads = threading.active_count()
        for index in range(30):
            layer.send(f"aw.{index}", {"i": index})
        results = await asyncio.gather(*waiters)
        assert threading.active_count() == threads
        return results

    results = asyncio.run(main())
    assert sorted(message["i"] for _, message in results) == list(range(30))


# ------------------------------------------------------------------ failures


def test_unreachable_redis_is_a_clear_connection_error() -> None:
    layer = RedisChannelLayer(hosts=[("127.0.0.1", free_port())], connect_timeout=0.5)
    with pytest.raises(ConnectionError, match="unreachable"):
        layer.send("x.test", {})
    with pytest.raises(RedisLayerConnectionError):
        layer.receive(["x.test"], block=True)

    async def main() -> None:
        with pytest.raises(RedisLayerConnectionError):
            await layer.receive_async(["x.test"], timeout=1)

    asyncio.run(main())
    layer.close()


def test_restart_gives_error_then_reconnects_with_new_epoch() -> None:
    workdir = tempfile.mkdtemp(prefix="shmchannels-redis-t-")
    port = free_port()
    proc = start_redis(port, workdir)
    try:
        layer = RedisChannelLayer(hosts=[("127.0.0.1", port)], connect_timeout=0.5)
        epoch = layer.epoch
        layer.send("r.test", {"n": 1})
        stop_redis(proc)
        with pytest.raises(RedisLayerConnectionError):
            layer.receive(["r.test"])
        proc = start_redis(port, workdir)
        assert layer.receive(["r.test"]) == (None, None)  # data lost: no persistence
        assert layer.check_epoch() != epoch
        layer.send("r.test", {"n": 2})
        assert layer.receive(["r.test"]) == ("r.test", {"n": 2})
        layer.close()
    finally:
        stop_redis(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def test_frozen_redis_times_out_instead_of_hanging() -> None:
    with own_redis() as (port, proc):
        layer = RedisChannelLayer(hosts=[("127.0.0.1", port)], connect_timeout=0.5, socket_timeout=1.5)
        layer.send("fz.test", {"n": 1})
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisLayerConnectionError):
                layer.receive(["fz.test"], block=True)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        # the message may or may not have been popped by the lost call: never twice
        first = layer.receive(["fz.test"])
        assert layer.receive(["fz.test"]) == (None, None)
        assert first in ((None, None), ("fz.test", {"n": 1}))
        layer.close()


def test_full_redis_refuses_sends_as_channel_full_but_drains() -> None:
    with own_redis("--maxmemory-policy", "noeviction") as (port, _proc):
        layer = RedisChannelLayer(hosts=[("127.0.0.1", port)], capacity=10_000)
        admin = redis.Redis(host="127.0.0.1", port=port)
        blob = {"data": b"x" * 10_000}
        layer.group_add("oom.group", "oom.member")
        for _ in range(5):
            layer.send("oom.test", blob)
        admin.config_set("maxmemory", "1")  # Redis is now over its limit for any write
        with pytest.raises(ChannelFull, match="out of memory"):
            layer.send("oom.test", blob)
        layer.send_group("oom.group", blob)  # members count as full: skipped, never raised
        received = 0
        while layer.receive(["oom.test", "oom.member"], block=received == 0)[0] is not None:
            received += 1
        assert received == 5  # readers still drain a full Redis
        admin.config_set("maxmemory", "0")
        layer.send_group("oom.group", blob)
        assert layer.receive(["oom.member"])[0] == "oom.member"
        admin.close()
        layer.close()


def test_statistics_count_sends_and_full(make: Any) -> None:
    layer = make(capacity=2)
    layer.send("st.test", {})
    layer.send("st.test", {})
    with pytest.raises(ChannelFull):
        layer.send("st.test", {})
    stats = layer.channel_statistics("st.test")
    assert stats["messages_pending"] == 2
    assert stats["messages_count"] == 2
    assert stats["channel_full_count"] == 1
    assert 0 <= stats["messages_max_age"] <= layer.expiry
    assert layer.global_statistics() == {"messages_count": 2, "channel_full_count": 1}


# ------------------------------------------------------------------ group capacities


@pytest.mark.parametrize("small", ["small.*", re.compile(r"small\..*")])
def test_send_group_uses_each_members_channel_capacity(make: Any, redis_server: Any, small: Any) -> None:
    layer = make(capacity=5, channel_capacity={small: 1, "other-?.x": 2})
    for member in ("small.a", "big.a", "other-1.x"):
        layer.group_add("caps", member)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    before = _evalsha_calls(client)
    for _ in range(4):
        layer.send_group("caps", {"n": 1})
    calls = _evalsha_calls(client) - before
    client.close()
    # a glob table is applied inside the one script; a regex needs group_channels first
    assert calls == (4 if isinstance(small, str) else 8)
    assert len(drain_all(layer, "small.a")) == 1
    assert len(drain_all(layer, "other-1.x")) == 2
    assert len(drain_all(layer, "big.a")) == 4


def drain_all(layer: RedisChannelLayer, channel: str) -> list[Any]:
    got = []
    for _ in range(100):
        name, message = layer.receive([channel])
        if name is None:
            return got
        got.append(message)
    raise AssertionError("channel never emptied")


def test_glob_translation_matches_fnmatch(redis_server: Any) -> None:
    from channels.layers.redis import _glob_to_lua

    globs = ["http.request", "websocket.*", "a-b?", "*!*", "x.*.y", "?"]
    names = ["http.request", "http.requests", "websocket.receive", "websocket", "a-bc", "a-b", "i.X!1",
             "x.1.y", "x..y", "x.y", "q"]
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        for glob in globs:
            lua = _glob_to_lua(glob)
            assert lua is not None
            for name in names:
                expected = bool(re.match(fnmatch.translate(glob), name))
                found = client.eval("return string.find(ARGV[1], ARGV[2]) and 1 or 0", 0, name, lua)
                assert bool(found) == expected, (glob, name)
    finally:
        client.close()


def test_discarded_memberships_leave_no_index_behind(make: Any, redis_server: Any) -> None:
    layer = make()
    for index in range(5):
        layer.group_add("idx", f"iface.I!{index}")
        layer.group_add("idx2", f"iface.I!{index}")
    assert any(":pg:" in key for key in _keys(redis_server, layer.prefix))
    for index in range(5):
        layer.group_discard("idx", f"iface.I!{index}")
        layer.group_discard("idx2", f"iface.I!{index}")
    left = _keys(redis_server, layer.prefix)
    assert not any(":pg:" in key or ":cg:" in key or ":g:" in key for key in left), left


def _drain_worker(url: str, prefix: str, out: Any) -> None:
    # a receiver process: blocking receives until the sentinel, then report what it got
    layer = RedisChannelLayer(hosts=[url], prefix=prefix)
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        channel, message = layer.receive(["mp.test", "mp.other"], block=True)
        if channel is None:
            continue
        if message.get("stop"):
            break
        got.append(message["n"])
    out.put(got)
    layer.close()


def test_competing_receiver_processes_get_each_message_once(make: Any, redis_server: Any) -> None:
    import multiprocessing

    layer = make(capacity=10_000)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    procs = [context.Process(target=_drain_worker, args=(redis_server.url, layer.prefix, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    try:
        total = 2000
        for index in range(total):
            layer.send("mp.test" if index % 3 else "mp.other", {"n": index})
        # stop them only once everything was taken, so no message is left behind
        wait_until = time.monotonic() + 30
        while any(layer.channel_statistics(name)["messages_pending"] for name in ("mp.test", "mp.other")):
            assert time.monotonic() < wait_until, "receivers did not drain the channels"
            time.sleep(0.05)
        for _ in procs:
            layer.send("mp.test", {"stop": True})
        results = [out.get(timeout=30) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(5)
    received = [n for got in results for n in got]
    assert sorted(received) == list(range(total))  # every message, none twice
    assert sum(1 for got in results if got) >= 2  # they really competed


def test_connections_never_retry_and_have_timeouts(make: Any, redis_server: Any) -> None:
    # a retried script whose reply was lost could deliver a message twice (asgi1.md §4)
    layer = make(hosts=[redis_server.url, (redis_server.host, redis_server.port)], socket_timeout=3)
    for shard in layer.shards:
        connection = shard.client.connection_pool.get_connection()
        try:
            assert connection.retry.get_retries() == 0
            assert connection.socket_timeout == 3 and connection.socket_connect_timeout == 2.0
        finally:
            shard.client.connection_pool.release(connection)

    async def check_async() -> None:
        for shard in layer.shards:
            client, _ = shard.async_client()
            connection = await client.connection_pool.get_connection()
            try:
                assert connection.retry.get_retries() == 0
                assert connection.socket_timeout == 3
            finally:
                await client.connection_pool.release(connection)
        await layer.close_async()

    asyncio.run(check_async())


def test_flush_escapes_glob_characters_in_the_prefix(make: Any) -> None:
    tag = next(_counter)
    starry, plain = make(prefix=f"fl{tag}*:"), make(prefix=f"fl{tag}x:")
    starry.send("g.test", {"n": 1})
    plain.send("g.test", {"n": 2})
    starry.flush()
    assert plain.receive(["g.test"]) == ("g.test", {"n": 2})
    assert starry.receive(["g.test"]) == (None, None)
