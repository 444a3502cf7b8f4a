"""The one conformance suite every shmchannels layer passes, part 2: delivery (asgi1.md §4).

Ordering and fairness, capacity, expiry, groups, flush/discard_prefix and the asyncio
extension, against every layer of ``conftest.LAYER_FACTORIES``. Expiry tests use 1 s
expiries and sleep just past them; nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import pytest

from shmlayer import contract
from tests.layers.helpers import drain, fill

# -------------------------------------------------------- process channels


def test_process_channel_full_name_and_fifo(layer: Any) -> None:
    prefix = "daphne.response.AbCdE!"
    sends = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4), ("a", 5)]
    for local, n in sends:
        layer.send(prefix + local, {"n": n})
    got = drain(layer, [prefix])
    assert sorted((channel, message["n"]) for channel, message in got) == sorted(
        (prefix + local, n) for local, n in sends
    )
    for local in "abc":
        order = [message["n"] for channel, message in got if channel == prefix + local]
        assert order == [n for l, n in sends if l == local]


def test_process_channels_of_other_prefixes_kept_apart(layer: Any) -> None:
    layer.send("proc.One!x", {"n": 1})
    layer.send("proc.Two!x", {"n": 2})
    assert layer.receive(["proc.One!"]) == ("proc.One!x", {"n": 1})
    assert layer.receive(["proc.One!"]) == (None, None)
    assert layer.receive(["proc.Two!"]) == ("proc.Two!x", {"n": 2})


def test_normal_channel_fifo_single_reader(layer: Any) -> None:
    for index in range(30):
        layer.send("normal.fifo", {"n": index})
    assert [message["n"] for _, message in drain(layer, ["normal.fifo"])] == list(range(30))


def test_no_starvation(layer: Any) -> None:
    fill(layer, "busy.channel", 60)
    layer.send("quiet.channel", {"quiet": True})
    for _ in range(40):
        channel, _message = layer.receive(["busy.channel", "quiet.channel"])
        if channel == "quiet.channel":
            return
    pytest.fail("the quiet channel was starved by the busy one over 40 receives")


def test_no_starvation_many_channels(layer: Any) -> None:
    channels = [f"fair.c{index}" for index in range(5)]
    for channel in channels:
        fill(layer, channel, 30)
    seen = {layer.receive(channels)[0] for _ in range(60)}
    assert seen == set(channels)


# ------------------------------------------------------------- capacity (§4)


def test_default_capacity(layer: Any) -> None:
    assert layer.capacity == 100
    fill(layer, "cap.default", 100)
    with pytest.raises(layer.ChannelFull):
        layer.send("cap.default", {"n": 100})


def test_capacity(make_layer: Any) -> None:
    layer = make_layer(capacity=3)
    fill(layer, "cap.test", 3)
    with pytest.raises(layer.ChannelFull):
        layer.send("cap.test", {"n": 3})
    with pytest.raises(contract.ChannelFull):
        layer.send("cap.test", {"n": 3})
    layer.send("cap.other", {"n": 0})  # other channels are not affected
    assert layer.receive(["cap.test"]) == ("cap.test", {"n": 0})
    layer.send("cap.test", {"n": 3})
    assert [m["n"] for _, m in drain(layer, ["cap.test"])] == [1, 2, 3]


def test_channel_capacity_first_match_wins(make_layer: Any) -> None:
    layer = make_layer(
        capacity=5,
        channel_capacity={
            "http.response!*": 2,
            re.compile(r"^websocket\.send!.+"): 3,
            "http.*": 4,
            "*": 1,
        },
    )
    expectations = {
        "http.response!abc": 2,
        "websocket.send!xyz": 3,
        "http.request": 4,
        "other.channel": 1,
    }
    for channel, capacity in expectations.items():
        assert layer.get_capacity(channel) == capacity
        fill(layer, channel, capacity)
        with pytest.raises(layer.ChannelFull):
            layer.send(channel, {"n": capacity})


def test_channel_capacity_regex_and_default(make_layer: Any) -> None:
    layer = make_layer(capacity=2, channel_capacity={re.compile(r"^big\..*"): 6})
    assert layer.get_capacity("big.one") == 6
    assert layer.get_capacity("small.one") == 2
    fill(layer, "big.one", 6)
    fill(layer, "small.one", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send("big.one", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("small.one", {})


def test_capacity_per_full_process_channel_name(make_layer: Any) -> None:
    layer = make_layer(capacity=2)
    prefix = "interface.CaP!"
    fill(layer, prefix + "one", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send(prefix + "one", {"n": 2})
    fill(layer, prefix + "two", 2)  # a second reply channel of the same process has its own room
    with pytest.raises(layer.ChannelFull):
        layer.send(prefix + "two", {"n": 2})
    got = drain(layer, [prefix])
    assert sorted(channel for channel, _ in got) == [prefix + "one"] * 2 + [prefix + "two"] * 2


def test_capacity_single_reader_channel(make_layer: Any) -> None:
    layer = make_layer(capacity=2)
    name = layer.new_channel("cap.reply?")
    fill(layer, name, 2)
    with pytest.raises(layer.ChannelFull):
        layer.send(name, {})


# -------------------------------------------------------------- expiry (§4)


def test_message_expiry_is_per_message(make_layer: Any) -> None:
    layer = make_layer(expiry=1)
    reply = layer.new_channel("exp.reply?")
    layer.group_add("exp.g", "exp.member")
    layer.send("exp.test", {"n": "early"})
    layer.send(reply, {"n": "early"})
    layer.send("exp.proc!x", {"n": "early"})
    layer.send_group("exp.g", {"n": "early"})
    time.sleep(0.35)
    # A later send must not extend the earlier messages' life.
    for channel in ("exp.test", reply, "exp.proc!x", "exp.member"):
        layer.send(channel, {"n": "late"})
    time.sleep(0.75)
    # "early" is 1.1 s old: never delivered, on any kind of channel; "late" is 0.75 s old.
    for receive_name, channel in (("exp.test",) * 2, (reply,) * 2, ("exp.proc!", "exp.proc!x"), ("exp.member",) * 2):
        assert layer.receive([receive_name]) == (channel, {"n": "late"})
        assert layer.receive([receive_name]) == (None, None)


def test_expired_messages_do_not_count_toward_capacity(make_layer: Any) -> None:
    layer = make_layer(expiry=1, capacity=2)
    fill(layer, "exp.cap", 2)
    prefix = "exp.proc!"
    fill(layer, prefix + "a", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send("exp.cap", {})
    time.sleep(1.1)
    fill(layer, "exp.cap", 2)
    fill(layer, prefix + "a", 2)
    assert [m["n"] for _, m in drain(layer, ["exp.cap"])] == [0, 1]
    assert [m["n"] for _, m in drain(layer, [prefix])] == [0, 1]


def test_expired_unread_channel_leaves_its_groups(make_layer: Any) -> None:
    layer = make_layer(expiry=1, group_expiry=60)
    for group in ("leave.one", "leave.two"):
        layer.group_add(group, "leave.slow")
        layer.group_add(group, "leave.fast")
    layer.send_group("leave.one", {"n": 1})
    assert layer.receive(["leave.fast"]) == ("leave.fast", {"n": 1})
    time.sleep(1.1)
    # leave.slow let its message expire unread; give a lazy layer the chance to notice.
    assert layer.receive(["leave.slow"]) == (None, None)
    for group in ("leave.one", "leave.two"):
        assert set(layer.group_channels(group)) == {"leave.fast"}
    layer.send_group("leave.two", {"n": 2})
    assert layer.receive(["leave.slow"]) == (None, None)
    assert layer.receive(["leave.fast"]) == ("leave.fast", {"n": 2})


# --------------------------------------------------------------- groups (§1)


def test_group_basics(layer: Any) -> None:
    layer.group_add("grp.test", "grp.one")
    layer.group_add("grp.test", "grp.two")
    layer.group_add("grp.test", "grp.proc!three")
    assert set(layer.group_channels("grp.test")) == {"grp.one", "grp.two", "grp.proc!three"}
    layer.send_group("grp.test", {"hello": "all"})
    assert layer.receive(["grp.one"]) == ("grp.one", {"hello": "all"})
    assert layer.receive(["grp.two"]) == ("grp.two", {"hello": "all"})
    assert layer.receive(["grp.proc!"]) == ("grp.proc!three", {"hello": "all"})
    assert layer.receive(["grp.one", "grp.two", "grp.proc!"]) == (None, None)


def test_group_add_is_idempotent(layer: Any) -> None:
    for _ in range(3):
        layer.group_add("idem.group", "idem.member")
    assert list(layer.group_channels("idem.group")) == ["idem.member"]
    layer.send_group("idem.group", {"n": 1})
    assert layer.receive(["idem.member"]) == ("idem.member", {"n": 1})
    assert layer.receive(["idem.member"]) == (None, None)


def test_group_discard(layer: Any) -> None:
    layer.group_add("disc.group", "disc.one")
    layer.group_add("disc.group", "disc.two")
    layer.group_discard("disc.group", "disc.one")
    layer.group_discard("disc.group", "disc.one")  # silent when absent
    layer.group_discard("disc.group", "never.member")
    layer.group_discard("no.such.group", "disc.two")
    assert list(layer.group_channels("disc.group")) == ["disc.two"]
    layer.send_group("disc.group", {"n": 1})
    assert layer.receive(["disc.one"]) == (None, None)
    assert layer.receive(["disc.two"]) == ("disc.two", {"n": 1})


def test_groups_are_independent(layer: Any) -> None:
    layer.group_add("ind.a", "ind.member")
    layer.group_add("ind.b", "ind.member")
    layer.group_discard("ind.a", "ind.member")
    assert list(layer.group_channels("ind.a")) == []
    assert list(layer.group_channels("ind.b")) == ["ind.member"]


def test_unknown_group(layer: Any) -> None:
    layer.send_group("unknown.group", {"n": 1})
    assert list(layer.group_channels("unknown.group")) == []


def test_send_group_skips_full_members(make_layer: Any) -> None:
    layer = make_layer(capacity=1)
    layer.group_add("full.group", "full.member")
    layer.group_add("full.group", "free.member")
    layer.send("full.member", {"n": "first"})
    layer.send_group("full.group", {"n": "group"})  # never raises ChannelFull
    assert layer.receive(["free.member"]) == ("free.member", {"n": "group"})
    assert layer.receive(["full.member"]) == ("full.member", {"n": "first"})
    assert layer.receive(["full.member"]) == (None, None)
    # Skipping a member does not remove it.
    assert set(layer.group_channels("full.group")) == {"full.member", "free.member"}


def test_send_group_to_reply_channels_of_one_process(make_layer: Any) -> None:
    # asgi1.md §10: a broadcast to many sockets on one interface must not lose copies.
    layer = make_layer(capacity=2)
    prefix = "interface.FaN!"
    members = [f"{prefix}conn{index}" for index in range(10)]
    for member in members:
        layer.group_add("fan.group", member)
    layer.send_group("fan.group", {"n": 1})
    layer.send_group("fan.group", {"n": 2})
    got = drain(layer, [prefix])
    assert sorted(channel for channel, _ in got) == sorted(members * 2)


def test_group_expiry(make_layer: Any) -> None:
    layer = make_layer(group_expiry=1)
    layer.group_add("gexp.group", "gexp.old")
    layer.group_add("gexp.group", "gexp.renewed")
    time.sleep(0.5)
    layer.group_add("gexp.group", "gexp.renewed")  # renews the membership
    layer.group_add("gexp.group", "gexp.young")
    time.sleep(0.7)
    # gexp.old was added 1.2 s ago: gone; the others 0.7 s ago: still members.
    assert sorted(layer.group_channels("gexp.group")) == ["gexp.renewed", "gexp.young"]
    layer.send_group("gexp.group", {"n": 1})
    assert layer.receive(["gexp.old"]) == (None, None)
    assert layer.receive(["gexp.renewed"]) == ("gexp.renewed", {"n": 1})
    assert layer.receive(["gexp.young"]) == ("gexp.young", {"n": 1})


# ------------------------------------------------------------ flush / prefix


def test_flush(layer: Any) -> None:
    layer.send("flush.a", {"n": 1})
    layer.send("flush.proc!x", {"n": 1})
    reply = layer.new_channel("flush.reply?")
    layer.send(reply, {"n": 1})
    layer.group_add("flush.group", "flush.a")
    layer.flush()
    assert layer.receive(["flush.a", "flush.proc!", reply]) == (None, None)
    assert list(layer.group_channels("flush.group")) == []
    # Still usable, with full capacity.
    fill(layer, "flush.a", layer.capacity)
    assert len(drain(layer, ["flush.a"])) == layer.capacity


def test_discard_prefix(layer: Any) -> None:
    dead, alive = "interface.DeAd!", "interface.LiVe!"
    layer.send(dead + "a", {"n": 1})
    layer.send(dead + "b", {"n": 2})
    layer.send(alive + "a", {"n": 3})
    layer.send("http.request", {"n": 4})
    for member in (dead + "a", dead + "b", alive + "a", "plain.member"):
        layer.group_add("prefix.group", member)
    layer.discard_prefix(dead)
    assert layer.receive([dead]) == (None, None)
    assert layer.receive([alive]) == (alive + "a", {"n": 3})
    assert layer.receive(["http.request"]) == ("http.request", {"n": 4})
    assert set(layer.group_channels("prefix.group")) == {alive + "a", "plain.member"}
    # The dead prefix's channels work again if something sends to them later.
    layer.send(dead + "a", {"n": 5})
    assert layer.receive([dead]) == (dead + "a", {"n": 5})


# --------------------------------------------------------- asyncio extension


def test_receive_async_returns_pending_message(layer: Any) -> None:
    layer.send("async.pending", {"n": 1})
    assert asyncio.run(layer.receive_async(["async.pending"], timeout=5)) == ("async.pending", {"n": 1})


def test_receive_async_process_channel(layer: Any) -> None:
    layer.send("async.proc!conn1", {"n": 1})
    assert asyncio.run(layer.receive_async(["async.proc!"], timeout=5)) == ("async.proc!conn1", {"n": 1})


def test_receive_async_timeout(layer: Any) -> None:
    assert asyncio.run(layer.receive_async(["async.none"], timeout=0.2)) == (None, None)


def test_receive_async_wakes_on_send_from_thread(layer: Any) -> None:
    async def main() -> Any:
        timer = threading.Timer(0.1, layer.send, args=("async.thread", {"n": 2}))
        timer.start()
        try:
            # The layer's own timeout is far beyond wait_for's: only a real wake-up passes.
            return await asyncio.wait_for(layer.receive_async(["async.thread"], timeout=60), 5)
        finally:
            timer.join(5)

    assert asyncio.run(main()) == ("async.thread", {"n": 2})


def test_receive_async_wakes_on_send_from_task(layer: Any) -> None:
    async def main() -> Any:
        waiter = asyncio.ensure_future(layer.receive_async(["async.task", "async.other"], timeout=60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        layer.send("async.task", {"n": 3})
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == ("async.task", {"n": 3})


def test_receive_async_wakes_on_send_group(layer: Any) -> None:
    layer.group_add("async.group", "async.gproc!c1")

    async def main() -> Any:
        waiter = asyncio.ensure_future(layer.receive_async(["async.gproc!"], timeout=60))
        await asyncio.sleep(0.05)
        layer.send_group("async.group", {"n": 4})
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == ("async.gproc!c1", {"n": 4})


def test_receive_async_does_not_block_the_loop(layer: Any) -> None:
    async def main() -> tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        try:
            result = await layer.receive_async(["async.idle"], timeout=0.3)
        finally:
            task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == (None, None)
    assert ticks >= 3, "the event loop did not run while receive_async waited"


def test_receive_async_cancelled_loses_nothing(layer: Any) -> None:
    async def main() -> None:
        waiter = asyncio.ensure_future(layer.receive_async(["async.cancel"], timeout=10))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    layer.send("async.cancel", {"n": 5})
    assert layer.receive(["async.cancel"]) == ("async.cancel", {"n": 5})


def test_receive_async_empty_list(layer: Any) -> None:
    # Like receive([]): nothing can ever arrive, so answer at once instead of hanging.
    async def main() -> Any:
        return [
            await asyncio.wait_for(layer.receive_async([]), 5),
            await asyncio.wait_for(layer.receive_async([], timeout=30), 5),
        ]

    assert asyncio.run(main()) == [(None, None), (None, None)]


def test_receive_async_validates_names(layer: Any) -> None:
    with pytest.raises(TypeError):
        asyncio.run(layer.receive_async(["proc.AbC!local"], timeout=0.1))
    with pytest.raises(TypeError):
        asyncio.run(layer.receive_async(["bad name"], timeout=0.1))
