"""channels.sessions.enforce_ordering: strict per-socket order across workers, bounded.

"Workers" here are the dispatch steps of helpers.dispatch; races are produced on purpose
by running a second dispatch in another thread at the exact point that matters.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test.utils import override_settings

import channels.sessions as sessions
from channels.exceptions import ConsumeLater
from channels.layers.inmemory import InMemoryChannelLayer
from channels.asgi import ChannelLayerWrapper
from channels.routing import route
from channels.sessions import ORDER_KEY, enforce_ordering, session_for_reply_channel, session_key_for_reply_channel, wait_channel_for

from .helpers import dispatch, drain, pump, ws_content

pytestmark = pytest.mark.usefixtures("db")

_counter = iter(range(10**6))


class RecordingLayer(InMemoryChannelLayer):
    """An in-memory layer that also logs every send, in order, across channels."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log = []

    def send(self, channel, message):
        self.log.append((channel, message.get("text"), message.get("order")))
        super().send(channel, message)


seen = []


@enforce_ordering
def ordered(message):
    if message.get("text") == "boom":
        raise RuntimeError("consumer bug")
    if message.get("text") == "later" and not message.get("__retries__"):
        raise ConsumeLater()
    seen.append(message["order"])
    message.reply_channel.send({"text": "reply %d" % message["order"]})


def new_socket(**layer_kwargs):
    seen.clear()
    wrapper = ChannelLayerWrapper(RecordingLayer(**layer_kwargs), "default", [
        route(["websocket.connect", "websocket.receive", "websocket.disconnect"], ordered),
    ])
    reply = f"t.ord{next(_counter)}!c"
    return wrapper, reply


def frame(reply, order, text=None):
    return ws_content(reply, order=order, text=text or f"m{order}")


def test_in_order_messages_run_and_advance():
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    assert seen == [0, 1]
    assert session_for_reply_channel(reply)[ORDER_KEY] == 2


def test_out_of_order_waits_and_is_released_after_replies():
    wrapper, reply = new_socket()
    layer = wrapper.channel_layer
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    dispatch(wrapper, "websocket.receive", frame(reply, 2))  # 1 not yet run: parked
    assert seen == [0]
    wait = wait_channel_for(reply)
    layer.log.clear()
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    # The reply of 1 is sent before 2 goes back on websocket.receive (FIFO flush).
    assert [entry for entry in layer.log if entry[0] != wait] == [
        (reply, "reply 1", None), ("websocket.receive", "m2", 2),
    ]
    pump(wrapper, ["websocket.receive"])
    assert seen == [0, 1, 2]
    assert [m["text"] for m in drain(layer, reply.split("!")[0] + "!")] == ["reply 0", "reply 1", "reply 2"]
    requeued = [e for e in layer.log if e[0] == "websocket.receive"]
    assert requeued and drain(layer, wait) == []


def test_shuffled_burst_runs_in_order():
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    orders = list(range(1, 51))
    random.Random(7).shuffle(orders)
    for order in orders:
        wrapper.channel_layer.send("websocket.receive", frame(reply, order))
    pump(wrapper, ["websocket.receive"])
    assert seen == list(range(0, 51))


def test_park_racing_with_the_running_message():
    # Worker B parks 2 while worker A is still running 1: A must release it.
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))

    @enforce_ordering
    def slow_one(message):
        if message["order"] == 1:
            other = threading.Thread(target=dispatch, args=(wrapper, "websocket.receive", frame(reply, 2)))
            other.start()
            other.join(10)
        seen.append(message["order"])

    wrapper.router.root.routing.insert(0, route("websocket.receive", slow_one))
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    pump(wrapper, ["websocket.receive"])
    assert seen == [0, 1, 2]


def test_running_message_finishing_between_read_and_park(monkeypatch):
    # Worker B read "next is 1", then A ran 1 to the end, then B parked 2: B must
    # notice the move and release 2 itself.
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    real_park = sessions._park
    raced = []

    def park_after_race(message):
        if not raced:
            raced.append(True)
            other = threading.Thread(target=dispatch, args=(wrapper, "websocket.receive", frame(reply, 1)))
            other.start()
            other.join(10)
        return real_park(message)

    monkeypatch.setattr(sessions, "_park", park_after_race)
    dispatch(wrapper, "websocket.receive", frame(reply, 2))
    assert seen == [0, 1]
    pump(wrapper, ["websocket.receive"])
    assert seen == [0, 1, 2]


def test_duplicate_is_dropped(caplog):
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    assert seen == [0, 1]
    assert "dropping message 1" in caplog.text


def test_receive_without_ordered_connect_starts_at_one():
    # The tutorial's connect consumer has no @enforce_ordering: next is not stored.
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.receive", frame(reply, 2))
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    pump(wrapper, ["websocket.receive"])
    assert seen == [1, 2]


def test_consumer_error_still_advances_but_consume_later_does_not():
    wrapper, reply = new_socket()
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    with pytest.raises(RuntimeError):
        dispatch(wrapper, "websocket.receive", frame(reply, 1, "boom"))
    with pytest.raises(ConsumeLater):
        dispatch(wrapper, "websocket.receive", frame(reply, 2, "later"))
    assert session_for_reply_channel(reply)[ORDER_KEY] == 2
    dispatch(wrapper, "websocket.receive", {**frame(reply, 2, "later"), "__retries__": 1})
    assert seen == [0, 2]


def test_bad_uses():
    with pytest.raises(ValueError, match="slight"):
        enforce_ordering(slight=True)
    wrapper, reply = new_socket()
    with pytest.raises(ValueError, match="integer 'order'"):
        dispatch(wrapper, "websocket.receive", {"reply_channel": reply, "path": "/", "text": "x"})
    assert enforce_ordering()(ordered.__wrapped__).__name__ == "ordered"


@override_settings(CHANNEL_ORDERING_TIMEOUT=0.2)
def test_gap_that_never_fills_closes_with_1011(caplog):
    wrapper, reply = new_socket()
    layer = wrapper.channel_layer
    prefix = reply.split("!")[0] + "!"
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    drain(layer, prefix)
    dispatch(wrapper, "websocket.receive", frame(reply, 2))  # 1 is lost
    time.sleep(0.3)
    dispatch(wrapper, "websocket.receive", frame(reply, 3))
    assert drain(layer, prefix) == [{"close": 1011}]
    assert "message 1 never came" in caplog.text
    assert drain(layer, wait_channel_for(reply)) == []
    dispatch(wrapper, "websocket.receive", frame(reply, 1))  # too late: ignored
    assert seen == [0]
    dispatch(wrapper, "websocket.disconnect", ws_content(reply, order=4, code=1011))
    assert seen == [0, 4]  # disconnect still runs so the app can clean up
    assert not SessionStore().exists(session_key_for_reply_channel(reply))


def test_full_wait_channel_closes_with_1011(caplog):
    wrapper, reply = new_socket(channel_capacity={"__wait__.*": 2})
    prefix = reply.split("!")[0] + "!"
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    drain(wrapper.channel_layer, prefix)
    for order in (3, 4, 5):
        dispatch(wrapper, "websocket.receive", frame(reply, order))
    assert drain(wrapper.channel_layer, prefix) == [{"close": 1011}]
    assert "is full" in caplog.text


def test_disconnect_with_ordered_messages_pending_keeps_session():
    wrapper, reply = new_socket()
    plain = []

    from channels.sessions import channel_session

    @channel_session
    def disconnect(message):
        plain.append(message["order"])

    wrapper.router.root.routing.insert(0, route("websocket.disconnect", disconnect))
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    wrapper.channel_layer.send("websocket.receive", frame(reply, 2))
    dispatch(wrapper, "websocket.disconnect", ws_content(reply, order=3, code=1000))
    key = session_key_for_reply_channel(reply)
    assert SessionStore().exists(key)  # 1 and 2 still need it
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    pump(wrapper, ["websocket.receive"])
    assert seen == [0, 1, 2] and plain == [3]


def test_next_message_cannot_run_before_replies_are_out(monkeypatch):
    # The moment "next is 2" is stored, another worker takes 2 and runs it. The reply of
    # 1 must already be out by then (the advance is deferred to the flush, after it).
    wrapper, reply = new_socket()
    layer = wrapper.channel_layer
    dispatch(wrapper, "websocket.connect", ws_content(reply))
    real_save = sessions.save_channel_session
    raced = []

    def save_then_race(session):
        real_save(session)
        if session.get(ORDER_KEY) == 2 and not raced:
            raced.append(True)
            other = threading.Thread(target=dispatch, args=(wrapper, "websocket.receive", frame(reply, 2)))
            other.start()
            other.join(10)

    monkeypatch.setattr(sessions, "save_channel_session", save_then_race)
    layer.log.clear()
    dispatch(wrapper, "websocket.receive", frame(reply, 1))
    assert raced and seen == [0, 1, 2]
    assert [text for channel, text, _ in layer.log if channel == reply] == ["reply 1", "reply 2"]
