"""Single-process behaviour of ShmChannelLayer: the contract and the shm extras."""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

import pytest

import shmlayer
from shmlayer import _layout as L

Make = Callable[..., shmlayer.ShmChannelLayer]


def test_send_receive_round_trip_keeps_types_and_copies(layer: shmlayer.ShmChannelLayer) -> None:
    message: dict[str, Any] = {"text": "é☃😀\x00", "bytes": b"\x00\xff", "nested": {"l": [b"a", "a", 1, 2.5, None, True]}}
    layer.send("chan", message)
    message["text"] = "changed"
    channel, got = layer.receive(["chan"])
    assert channel == "chan"
    assert got == {"text": "é☃😀\x00", "bytes": b"\x00\xff", "nested": {"l": [b"a", "a", 1, 2.5, None, True]}}
    assert type(got["nested"]["l"][0]) is bytes and type(got["nested"]["l"][1]) is str
    assert layer.receive(["chan"]) == (None, None)
    assert layer.verify() == []


def test_fifo_and_one_reader_each(make_layer: Make) -> None:
    layer = make_layer()
    other = shmlayer.ShmChannelLayer(name=layer.segment_name)
    try:
        for i in range(20):
            layer.send("work", {"i": i})
        got = []
        for k in range(25):
            channel, message = (layer if k % 2 else other).receive(["work"])
            if message is not None:
                got.append(message["i"])
        assert got == list(range(20))
    finally:
        other.close()


def test_process_channel_fifo_and_full_names(layer: shmlayer.ShmChannelLayer) -> None:
    for i in range(6):
        layer.send(f"interface.AbC!conn{i % 3}", {"i": i})
    got = [layer.receive(["interface.AbC!"]) for _ in range(7)]
    assert got[:6] == [(f"interface.AbC!conn{i % 3}", {"i": i}) for i in range(6)]
    assert got[6] == (None, None)
    assert layer.verify() == []
    # one-shot full names are freed once empty; the prefix's queue entry is kept for reuse
    assert [(c["name"], c["depth"]) for c in layer.stats()["channels"]] == [("interface.AbC!", 0)]


def test_process_channel_capacity_is_per_full_name(make_layer: Make) -> None:
    layer = make_layer(capacity=2)
    layer.send("p!a", {})
    layer.send("p!a", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("p!a", {})
    layer.send("p!b", {})  # another socket of the same process is not affected
    layer.send("p!b", {})
    assert layer.channel_statistics("p!a")["channel_full_count"] == 1


def test_channel_capacity_patterns(make_layer: Make) -> None:
    layer = make_layer(capacity=5, channel_capacity={"small.*": 1, re.compile(r"^big$"): 8})
    layer.send("small.one", {})
    with pytest.raises(shmlayer.ChannelFull):
        layer.send("small.one", {})
    for _ in range(8):
        layer.send("big", {})
    with pytest.raises(shmlayer.ChannelFull):
        layer.send("big", {})


@pytest.mark.parametrize("bad", [None, 5, b"bytes", "", "a b", "x" * 300, "ends?", "x!", "a?b?c"])
def test_bad_channel_names_raise_type_error(layer: shmlayer.ShmChannelLayer, bad: Any) -> None:
    with pytest.raises(TypeError):
        layer.send(bad, {})
    assert layer.verify() == []


def test_bad_receive_arguments(layer: shmlayer.ShmChannelLayer) -> None:
    with pytest.raises(TypeError):
        layer.receive("not-a-list")
    with pytest.raises(TypeError):
        layer.receive(["p!local"])
    assert layer.receive([]) == (None, None)


@pytest.mark.parametrize("bad", [[1], {"k": object()}, {1: "int key"}, {"k": {2: "nested int key"}}, {"k": 2**70},
                                 {"__asgi_channel__": "x"}, {"k": {1, 2}}])
def test_non_asgi_messages_rejected_at_send(layer: shmlayer.ShmChannelLayer, bad: Any) -> None:
    with pytest.raises(TypeError):
        layer.send("chan", bad)
    assert layer.receive(["chan"]) == (None, None)
    assert layer.verify() == []


def test_message_too_large(make_layer: Make) -> None:
    layer = make_layer(max_message_size=1000)
    with pytest.raises(layer.MessageTooLarge):
        layer.send("chan", {"b": b"x" * 1000})
    with pytest.raises(layer.MessageTooLarge):
        layer.send_group("g", {"b": b"x" * 1000})
    layer.send("chan", {"b": b"x" * 900})
    assert layer.receive(["chan"])[1] == {"b": b"x" * 900}


def test_segment_full_is_a_clear_channel_full_and_recovers(make_layer: Make) -> None:
    layer = make_layer(size=L.MIN_SEGMENT_SIZE, capacity=100000, max_message_size=200000)
    sent = 0
    with pytest.raises(shmlayer.SegmentFull, match="is full"):
        for _ in range(1000):
            layer.send("fill", {"b": b"x" * 100000})
            sent += 1
    assert sent >= 4
    assert isinstance(shmlayer.SegmentFull("x"), shmlayer.ChannelFull)
    assert layer.verify() == []
    for _ in range(sent):
        assert layer.receive(["fill"])[1] == {"b": b"x" * 100000}
    layer.send("fill", {"b": b"y" * 100000})
    assert layer.stats()["global"]["n_segment_full"] == 1


def test_node_table_exhaustion(make_layer: Make) -> None:
    layer = make_layer(size=L.MIN_SEGMENT_SIZE, capacity=100000)
    with pytest.raises(shmlayer.SegmentFull):
        for i in range(100000):
            layer.send(f"c{i % 7}", {})
    assert layer.verify() == []


def test_config_errors_are_clear(tmp_path: Any) -> None:
    with pytest.raises(TypeError):
        shmlayer.ShmChannelLayer(name="bad/name")
    with pytest.raises(TypeError):
        shmlayer.ShmChannelLayer(name="ok", size="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        shmlayer.ShmChannelLayer(name="ok", size=100)
    with pytest.raises(TypeError):
        shmlayer.ShmChannelLayer(name="ok", capacity=0)
    name = f"shmch-ut-cfg-{os.getpid()}"
    with pytest.raises(ValueError, match="max_message_size"):
        shmlayer.ShmChannelLayer(name=name, size=L.MIN_SEGMENT_SIZE, max_message_size=1 << 20)
    os.unlink(f"/dev/shm/{name}")


def test_no_room_in_dev_shm_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tiny:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Tiny())
    name = f"shmch-ut-room-{os.getpid()}"
    with pytest.raises(shmlayer.SegmentError) as info:
        shmlayer.ShmChannelLayer(name=name, size=8 << 20)
    assert "\n" not in str(info.value) and "/dev/shm" in str(info.value)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_segment_mode_and_default_name(make_layer: Make, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    layer = make_layer(mode=0o640)
    assert os.stat(f"/dev/shm/{layer.segment_name}").st_mode & 0o777 == 0o640
    assert os.stat(f"/dev/shm/{make_layer().segment_name}").st_mode & 0o777 == 0o600
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "proj.settings")
    first = shmlayer.default_segment_name()
    monkeypatch.chdir(tmp_path)
    assert shmlayer.default_segment_name() != first
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "other.settings")
    assert shmlayer.default_segment_name().startswith("shmchannels-")


def test_not_a_segment_and_version_mismatch(make_layer: Make) -> None:
    name = f"shmch-ut-foreign-{os.getpid()}"
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"garbage!" * 1000)
    try:
        with pytest.raises(shmlayer.SegmentError, match="not a shmchannels segment"):
            shmlayer.ShmChannelLayer(name=name)
    finally:
        os.unlink(f"/dev/shm/{name}")
    layer = make_layer()
    layer.close()
    with open(f"/dev/shm/{layer.segment_name}", "r+b") as f:
        f.seek(8)
        f.write((L.LAYOUT_VERSION + 1).to_bytes(4, "little"))
    with pytest.raises(shmlayer.LayoutVersionMismatch, match="layout version"):
        shmlayer.ShmChannelLayer(name=layer.segment_name)


def test_expiry_is_strict_and_per_message(make_layer: Make) -> None:
    layer = make_layer(expiry=0.3, capacity=2)
    layer.send("e", {"n": 1})
    time.sleep(0.2)
    layer.send("e", {"n": 2})  # must not extend message 1
    time.sleep(0.15)
    assert layer.receive(["e"]) == ("e", {"n": 2})
    assert layer.receive(["e"]) == (None, None)
    assert layer.channel_statistics("e")["messages_pending"] == 0


def test_expired_messages_free_capacity_and_memory_unread(make_layer: Make) -> None:
    layer = make_layer(expiry=0.2, capacity=2)
    layer.send("x", {"b": b"1" * 5000})
    layer.send("x", {"b": b"2" * 5000})
    with pytest.raises(layer.ChannelFull):
        layer.send("x", {})
    time.sleep(0.25)
    layer.send("x", {"n": 3})  # expired ones no longer count
    used = layer.stats()["global"]["heap_used"]
    assert used < 5000
    layer.send("y", {"b": b"3" * 5000})
    time.sleep(0.25)
    for i in range(10):  # unrelated operations sweep the expired message away
        layer.send(f"z{i}", {})
    snap = layer.stats()
    assert snap["global"]["n_expired"] >= 4 and not snap["problems"]
    assert {c["name"]: c["depth"] for c in snap["channels"]}["y"] == 0


def test_mixed_expiry_senders_still_free_capacity(make_layer: Make) -> None:
    layer = make_layer(expiry=10, capacity=2)
    short = shmlayer.ShmChannelLayer(name=layer.segment_name, expiry=0.1)
    try:
        layer.send("m", {"n": 1})
        short.send("m", {"n": 2})
        time.sleep(0.15)
        layer.send("m", {"n": 3})  # the expired message behind a live head does not count
        assert [layer.receive(["m"])[1] for _ in range(3)] == [{"n": 1}, {"n": 3}, None]
    finally:
        short.close()


def test_groups_basic(layer: shmlayer.ShmChannelLayer) -> None:
    layer.group_add("room", "a")
    layer.group_add("room", "a")
    layer.group_add("room", "p!b")
    assert sorted(layer.group_channels("room")) == ["a", "p!b"]
    layer.send_group("room", {"m": 1})
    assert layer.receive(["a"]) == ("a", {"m": 1})
    assert layer.receive(["p!"]) == ("p!b", {"m": 1})
    layer.group_discard("room", "a")
    layer.group_discard("room", "a")
    layer.group_discard("nogroup", "a")
    assert layer.group_channels("room") == ["p!b"]
    layer.group_discard("room", "p!b")
    assert layer.group_channels("room") == []
    layer.send_group("room", {"m": 2})
    layer.send_group("never", {"m": 2})
    assert layer.receive(["a", "p!"]) == (None, None)
    assert layer.verify() == [] and layer.stats()["groups"] == []
    with pytest.raises(TypeError):
        layer.group_add("bad name", "a")
    with pytest.raises(TypeError):
        layer.group_add("g", "p!")


def test_send_group_stores_payload_once_and_skips_full_members(make_layer: Make) -> None:
    layer = make_layer(capacity=1)
    for i in range(50):
        layer.group_add("big", f"iface!c{i}")
    layer.send("iface!c7", {"first": True})
    before = layer.stats()["global"]["heap_used"]
    layer.send_group("big", {"b": b"x" * 10000})
    snap = layer.stats()
    assert snap["global"]["heap_used"] - before == 16384  # one block for 49 copies
    assert snap["global"]["n_group_skipped"] == 1
    got = {}
    while True:
        channel, message = layer.receive(["iface!"])
        if channel is None:
            break
        got.setdefault(channel, []).append(message)
    assert len(got) == 50 and got["iface!c7"] == [{"first": True}]
    assert layer.stats()["global"]["heap_used"] == 0


def test_expired_message_makes_channel_leave_every_group(make_layer: Make) -> None:
    layer = make_layer(expiry=0.1)
    for group in ("g1", "g2"):
        layer.group_add(group, "dead!x")
        layer.group_add(group, "live")
    layer.send_group("g1", {})
    assert layer.receive(["live"])[0] == "live"
    time.sleep(0.15)
    assert layer.receive(["dead!"]) == (None, None)
    assert layer.group_channels("g1") == ["live"] and layer.group_channels("g2") == ["live"]
    assert layer.verify() == []


def test_group_memberships_expire(make_layer: Make) -> None:
    layer = make_layer(group_expiry=1)
    layer.group_add("g", "a")
    time.sleep(0.6)
    layer.group_add("g", "b")
    time.sleep(0.5)
    assert layer.group_channels("g") == ["b"]
    layer.send_group("g", {})
    assert layer.receive(["a"]) == (None, None) and layer.receive(["b"])[0] == "b"


def test_discard_prefix_drops_messages_and_memberships(layer: shmlayer.ShmChannelLayer) -> None:
    layer.send("interface.dead!c1", {})
    layer.send("interface.dead!c2", {})
    layer.send("interface.live!c1", {})
    layer.group_add("room", "interface.dead!c1")
    layer.group_add("room", "interface.live!c1")
    assert layer.discard_prefix("interface.dead!") == 2
    assert layer.group_channels("room") == ["interface.live!c1"]
    assert layer.receive(["interface.dead!"]) == (None, None)
    assert layer.receive(["interface.live!"])[0] == "interface.live!c1"
    assert layer.verify() == []
    with pytest.raises(TypeError):
        layer.discard_prefix("")


def test_flush_empties_everything(layer: shmlayer.ShmChannelLayer) -> None:
    other = shmlayer.ShmChannelLayer(name=layer.segment_name)
    try:
        layer.send("a", {})
        layer.group_add("g", "a")
        other.receive(["a"], block=False)
        layer.send("a", {})
        layer.flush()
        assert other.receive(["a"]) == (None, None)
        assert other.group_channels("g") == []
        other.send("a", {"again": 1})
        assert layer.receive(["a"]) == ("a", {"again": 1})
        assert layer.verify() == []
    finally:
        other.close()


def test_new_channel(layer: shmlayer.ShmChannelLayer) -> None:
    name = layer.new_channel("http.response?")
    assert name.startswith("http.response?") and len(name) > len("http.response?")
    layer.send(name, {"x": 1})
    assert layer.receive([name]) == (name, {"x": 1})
    for bad in ("x!", "x.y", 3):
        with pytest.raises(TypeError):
            layer.new_channel(bad)  # type: ignore[arg-type]


def test_epoch_reattach_after_unlink_and_recreate(make_layer: Make) -> None:
    layer = make_layer()
    other = shmlayer.ShmChannelLayer(name=layer.segment_name)
    try:
        epoch = other.epoch
        other.send("old", {})
        os.unlink(f"/dev/shm/{layer.segment_name}")
        fresh = shmlayer.ShmChannelLayer(name=layer.segment_name, size=4 << 20)
        assert fresh.epoch != epoch
        assert other.check_epoch() == fresh.epoch
        other.send("new", {"n": 1})
        assert fresh.receive(["new"]) == ("new", {"n": 1})
        assert fresh.receive(["old"]) == (None, None)
        fresh.unlink()
    finally:
        other.close()


def test_statistics(layer: shmlayer.ShmChannelLayer) -> None:
    layer.send("s", {})
    layer.send("s", {})
    stats = layer.channel_statistics("s")
    assert stats["messages_count"] == 2 and stats["messages_pending"] == 2
    assert stats["messages_max_age"] >= 0
    overall = layer.global_statistics()
    assert overall["messages_pending"] == 2 and overall["messages_count"] == 2
    assert layer.channel_statistics("unknown")["messages_pending"] == 0
    assert "statistics" in layer.extensions and "asyncio" in layer.extensions


def test_close_then_use_reattaches(layer: shmlayer.ShmChannelLayer) -> None:
    layer.send("c", {"n": 1})
    layer.close()
    layer.close()
    assert layer.receive(["c"]) == ("c", {"n": 1})


def test_blocking_receive_times_out_in_about_a_second(layer: shmlayer.ShmChannelLayer) -> None:
    start = time.monotonic()
    assert layer.receive(["quiet"], block=True) == (None, None)
    assert 0.9 <= time.monotonic() - start < 3
    assert layer.verify() == []  # the waiter was disarmed


def test_full_channel_table_evicts_kept_empty_entries(make_layer: Make) -> None:
    layer = make_layer(size=L.MIN_SEGMENT_SIZE, max_message_size=1000)
    slots = layer.stats()["tables"]["channels"]["total"]
    for i in range(slots + 50):  # more named channels than the table holds, each emptied
        layer.send(f"named.{i}", {"i": i})
        assert layer.receive([f"named.{i}"]) == (f"named.{i}", {"i": i})
    for i in range(slots + 50):  # and reply channels of one process, whose prefix stays pinned
        layer.send(f"iface!c{i}", {"i": i})
        assert layer.receive(["iface!"]) == (f"iface!c{i}", {"i": i})
    assert layer.verify() == []
    layer.send("p!x", {})
    with pytest.raises(shmlayer.SegmentFull):
        for i in range(slots + 10):  # live (non-empty) channels cannot be evicted
            layer.send(f"live.{i}", {})
    assert layer.receive(["p!"]) == ("p!x", {})
    assert layer.verify() == []


def test_send_group_into_a_full_segment_drops_and_counts(make_layer: Make) -> None:
    layer = make_layer(size=L.MIN_SEGMENT_SIZE, capacity=100000, max_message_size=200000)
    layer.group_add("g", "member")
    with pytest.raises(shmlayer.SegmentFull):
        for _ in range(100):
            layer.send("filler", {"b": b"x" * 100000})
    before = layer.stats()["global"]["n_segment_full"]
    layer.send_group("g", {"b": b"y" * 100000})  # never raises ChannelFull
    assert layer.stats()["global"]["n_segment_full"] == before + 1
    assert layer.receive(["member"]) == (None, None)
    assert layer.verify() == []
