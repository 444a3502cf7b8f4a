"""channels.channel + channels.message: sends at once outside consumers, held inside.

Held sends go out in FIFO order when the consumer finishes; ``immediately=True``
bypasses; a full channel is retried with backoff and then reported with advice.
"""

from __future__ import annotations

import threading
import time

import pytest

from channels import Channel, Group
from channels.exceptions import HeldSendTimeout
from channels.message import Message, pending_message_store
from shmlayer.contract import ChannelFull

from .helpers import drain, make_wrapper, run_consumer


def test_send_outside_consumer_goes_at_once():
    wrapper = make_wrapper()
    Channel("chat-messages", channel_layer=wrapper).send({"room": "a"})
    assert wrapper.channel_layer.receive(["chat-messages"]) == ("chat-messages", {"room": "a"})


def test_send_needs_a_dict():
    with pytest.raises(TypeError, match="dicts"):
        Channel("x", channel_layer=make_wrapper()).send("hello")
    with pytest.raises(TypeError):
        Group("g", channel_layer=make_wrapper()).send(["x"])


def test_channel_by_alias_uses_the_configured_layer():
    from channels.asgi import channel_layers

    channel = Channel("tests.alias-check")
    assert channel.channel_layer is channel_layers["default"]
    channel.send({"n": 1})
    assert channel_layers["default"].receive(["tests.alias-check"]) == ("tests.alias-check", {"n": 1})


def test_held_sends_flush_in_order_after_consumer():
    wrapper = make_wrapper()
    layer = wrapper.channel_layer
    seen_during = []

    def consumer(message):
        message.reply_channel.send({"text": "one"})
        Channel("side", channel_layer=wrapper).send({"n": 1})
        message.reply_channel.send({"text": "two"})
        Channel("side", channel_layer=wrapper).send({"n": 2}, immediately=True)
        seen_during.append(drain(layer, "t.r!"))
        seen_during.append(drain(layer, "side"))

    run_consumer(consumer, Message({"reply_channel": "t.r!1"}, "websocket.receive", wrapper))
    assert seen_during == [[], [{"n": 2}]]  # held ones not out yet; immediate one was
    assert drain(layer, "t.r!") == [{"text": "one"}, {"text": "two"}]
    assert drain(layer, "side") == [{"n": 1}]
    assert not pending_message_store.holding


def test_held_send_is_a_snapshot_and_is_checked_at_send_time():
    wrapper = make_wrapper()
    errors = []

    def consumer(message):
        content = {"text": "before"}
        message.reply_channel.send(content)
        content["text"] = "after"
        try:
            Channel("bad name!", channel_layer=wrapper).send({"x": 1})
        except TypeError as exc:
            errors.append(str(exc))
        try:
            message.reply_channel.send({"x": object()})
        except TypeError as exc:
            errors.append(str(exc))

    run_consumer(consumer, Message({"reply_channel": "t.r!1"}, "websocket.receive", wrapper))
    assert drain(wrapper.channel_layer, "t.r!") == [{"text": "before"}]
    assert len(errors) == 2


def test_held_sends_still_flush_when_consumer_raises():
    wrapper = make_wrapper()

    def consumer(message):
        message.reply_channel.send({"accept": True})
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_consumer(consumer, Message({"reply_channel": "t.r!1"}, "websocket.connect", wrapper))
    assert drain(wrapper.channel_layer, "t.r!") == [{"accept": True}]


def test_group_add_send_discard():
    wrapper = make_wrapper()
    layer = wrapper.channel_layer
    group = Group("chat", channel_layer=wrapper)
    group.add(Channel("t.a!1", channel_layer=wrapper))
    group.add("t.b!1")
    assert sorted(group.channel_names()) == ["t.a!1", "t.b!1"]
    group.send({"text": "hi"})
    assert drain(layer, "t.a!") == [{"text": "hi"}]
    assert drain(layer, "t.b!") == [{"text": "hi"}]
    group.discard("t.b!1")

    def consumer(message):
        Group("chat", channel_layer=wrapper).send({"text": "held"})
        assert drain(layer, "t.a!") == []

    run_consumer(consumer, Message({}, "x", wrapper))
    assert drain(layer, "t.a!") == [{"text": "held"}]
    assert drain(layer, "t.b!") == []


def test_channel_and_group_identity():
    wrapper = make_wrapper()
    assert Channel("a", channel_layer=wrapper) == Channel("a", channel_layer=wrapper)
    assert Channel("a") != Group("a")
    assert str(Channel(b"a.b")) == "a.b"
    with pytest.raises(TypeError):
        Channel(5)


def test_message_api():
    wrapper = make_wrapper()
    message = Message({"reply_channel": "t.r!1", "text": "hi", "order": 1}, "websocket.receive", wrapper)
    assert message["text"] == "hi" and message.get("bytes") is None and message.get("x", 3) == 3
    assert "order" in message and sorted(message.keys()) == ["order", "reply_channel", "text"]
    assert message.channel.name == "websocket.receive" and message.channel_layer is wrapper
    assert message.reply_channel == Channel("t.r!1") and message.reply_channel.channel_layer is wrapper
    copied = message.copy()
    copied["text"] = "changed"
    assert message["text"] == "hi" and copied.channel.name == "websocket.receive"
    assert Message({}, "x", wrapper).reply_channel is None


def test_full_channel_is_retried_until_space_frees():
    wrapper = make_wrapper(capacity=1)
    layer = wrapper.channel_layer
    layer.send("busy", {"n": 0})
    freed = threading.Timer(0.2, lambda: layer.receive(["busy"]))
    freed.start()

    def consumer(message):
        Channel("busy", channel_layer=wrapper).send({"n": 1})

    try:
        run_consumer(consumer, Message({}, "x", wrapper))
    finally:
        freed.join()
    assert drain(layer, "busy") == [{"n": 1}]


def test_full_channel_gives_up_with_advice(monkeypatch):
    monkeypatch.setattr(pending_message_store, "flush_timeout", 0.2)
    wrapper = make_wrapper(capacity=1)
    layer = wrapper.channel_layer
    layer.send("busy", {"n": 0})

    def consumer(message):
        Channel("busy", channel_layer=wrapper).send({"n": 1})
        Channel("free", channel_layer=wrapper).send({"n": 2})

    started = time.monotonic()
    with pytest.raises(HeldSendTimeout) as info:
        run_consumer(consumer, Message({}, "x", wrapper))
    assert time.monotonic() - started >= 0.2
    assert isinstance(info.value, ChannelFull)
    assert info.value.failed == ["busy"]
    assert "channel_capacity" in str(info.value) and "more workers" in str(info.value)
    assert drain(layer, "free") == [{"n": 2}]  # the rest of the list still went out
    assert not pending_message_store.holding  # nothing leaks into the next consumer


def test_thread_without_consumer_sends_at_once_while_another_holds():
    wrapper = make_wrapper()
    layer = wrapper.channel_layer
    results = []

    def consumer(message):
        thread = threading.Thread(target=lambda: Channel("other", channel_layer=wrapper).send({"n": 1}))
        thread.start()
        thread.join()
        results.append(drain(layer, "other"))

    run_consumer(consumer, Message({}, "x", wrapper))
    assert results == [[{"n": 1}]]
