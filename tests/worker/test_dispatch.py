"""worker._dispatch: one message through routing and its consumer, on a real layer."""

from __future__ import annotations

import logging

import pytest

from tests.worker.helpers import make_wrapper

from channels.exceptions import (
    ChannelSocketException,
    ConsumeLater,
    DenyConnection,
    WebsocketCloseException,
)
from channels.routing import route
from channels.signals import consumer_finished, consumer_started
from worker._dispatch import dispatch

REPLY = "interface.test!conn1"


class Consumer:
    """A consumer whose behaviour each test sets."""

    def __init__(self, action=None):
        self.action = action
        self.calls = []

    def __call__(self, message, **kwargs):
        self.calls.append((dict(message.content), kwargs))
        if self.action is not None:
            self.action(message)


def raise_(exc):
    def action(message):
        raise exc

    return action


def replies(wrapper):
    layer = wrapper.channel_layer
    got = []
    while True:
        _, message = layer.receive(["interface.test!"])
        if message is None:
            return got
        got.append(message)


def run_one(wrapper, channel, content, **kwargs):
    return dispatch(wrapper, channel, content, sender=object, **kwargs)


def test_consumer_gets_message_and_route_kwargs():
    consumer = Consumer()
    wrapper = make_wrapper([route("websocket.receive", consumer, path=r"^/chat/(?P<room>\w+)/$")])
    assert run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/chat/lobby/", "text": "hi"})
    assert consumer.calls == [({"reply_channel": REPLY, "path": "/chat/lobby/", "text": "hi"}, {"room": "lobby"})]


def test_unrouted_message_is_logged_not_raised(caplog):
    wrapper = make_wrapper([route("a.channel", Consumer())])
    with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
        assert run_one(wrapper, "other.channel", {}) is False
    assert "Check your routing" in caplog.text


def test_held_sends_are_flushed_after_the_consumer():
    seen_during = []

    def action(message):
        message.reply_channel.send({"text": "one"})
        message.reply_channel.send({"text": "two"})
        seen_during.append(message.channel_layer.channel_layer.receive(["interface.test!"]))

    wrapper = make_wrapper([route("websocket.receive", Consumer(action))])
    run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/", "text": "x"})
    assert seen_during == [(None, None)]
    assert replies(wrapper) == [{"text": "one"}, {"text": "two"}]


def test_consumer_exception_is_logged_and_signals_still_sent(caplog):
    events = []
    started = lambda **kw: events.append("started")  # noqa: E731
    finished = lambda **kw: events.append("finished")  # noqa: E731
    consumer_started.connect(started)
    consumer_finished.connect(finished)
    wrapper = make_wrapper([route("test.boom", Consumer(raise_(KeyError("nope"))))])
    try:
        with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
            assert run_one(wrapper, "test.boom", {"a": 1})
    finally:
        consumer_started.disconnect(started)
        consumer_finished.disconnect(finished)
    assert events == ["started", "finished"]
    assert "KeyError" in caplog.text and "test.boom" in caplog.text


def test_sends_made_before_an_exception_are_still_flushed():
    def action(message):
        message.reply_channel.send({"text": "before"})
        raise RuntimeError("after sending")

    wrapper = make_wrapper([route("websocket.receive", Consumer(action))])
    run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/"})
    assert replies(wrapper) == [{"text": "before"}]


def test_deny_connection_closes_the_socket():
    wrapper = make_wrapper([route("websocket.connect", Consumer(raise_(DenyConnection())))])
    run_one(wrapper, "websocket.connect", {"reply_channel": REPLY, "path": "/", "order": 0})
    assert replies(wrapper) == [{"close": True}]


def test_deny_connection_outside_connect_is_an_error_without_reply(caplog):
    wrapper = make_wrapper([route("websocket.receive", Consumer(raise_(DenyConnection())))])
    with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
        run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/"})
    assert replies(wrapper) == []
    assert "only websocket.connect" in caplog.text


def test_channel_socket_exception_runs_against_the_message():
    wrapper = make_wrapper([
        route("websocket.receive", Consumer(raise_(WebsocketCloseException(4001)))),
        route("websocket.disconnect", Consumer(raise_(ChannelSocketException()))),
    ])
    run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/"})
    run_one(wrapper, "websocket.disconnect", {"reply_channel": REPLY, "path": "/"})
    assert replies(wrapper) == [{"close": 4001}, {"close": True}]


def test_consume_later_requeues_with_a_retry_count():
    wrapper = make_wrapper([route("test.later", Consumer(raise_(ConsumeLater())))])
    layer = wrapper.channel_layer
    run_one(wrapper, "test.later", {"n": 1})
    channel, content = layer.receive(["test.later"])
    assert channel == "test.later" and content == {"n": 1, "__retries__": 1}
    run_one(wrapper, "test.later", content)
    assert layer.receive(["test.later"])[1] == {"n": 1, "__retries__": 2}


def test_consume_later_gives_up_after_message_retries(caplog):
    consumer = Consumer(raise_(ConsumeLater()))
    wrapper = make_wrapper([route("test.later", consumer)])
    layer = wrapper.channel_layer
    content = {"n": 1}
    with caplog.at_level(logging.WARNING, logger="django.channels.worker"):
        for _ in range(10):
            run_one(wrapper, "test.later", content, message_retries=3)
            _, content = layer.receive(["test.later"])
            if content is None:
                break
    assert len(consumer.calls) == 4  # the first try and 3 retries
    assert "Exceeded 3 retries" in caplog.text


def test_last_retry_is_marked_doomed():
    doomed = []
    wrapper = make_wrapper([route("test.c", Consumer(lambda m: doomed.append(getattr(m, "__doomed__", False))))])
    run_one(wrapper, "test.c", {"__retries__": 2}, message_retries=3)
    run_one(wrapper, "test.c", {"__retries__": 3}, message_retries=3)
    assert doomed == [False, True]


def test_log_line_per_message_names_channel_consumer_and_duration(caplog):
    wrapper = make_wrapper([route("test.logged", Consumer())])
    with caplog.at_level(logging.INFO, logger="django.channels.worker"):
        run_one(wrapper, "test.logged", {}, log_each=True)
        run_one(wrapper, "test.logged", {}, log_each=False)
    lines = [r.getMessage() for r in caplog.records if "test.logged" in r.getMessage()]
    assert len(lines) == 1
    assert "tests.worker.test_dispatch.Consumer" in lines[0] and lines[0].rstrip().endswith("ms")


@pytest.mark.parametrize("failing", ["callback", "flush"])
def test_failures_around_the_consumer_are_contained(failing, caplog):
    consumer = Consumer(lambda m: m.reply_channel.send({"text": "x" * 10}))
    wrapper = make_wrapper([route("websocket.receive", consumer)], capacity=1)
    layer = wrapper.channel_layer
    kwargs = {}
    if failing == "callback":
        kwargs["callback"] = lambda channel, message: 1 / 0
    else:
        layer.send(REPLY, {"text": "fills the channel"})
        from channels.message import pending_message_store

        pending_message_store.flush_timeout, saved = 0.1, pending_message_store.flush_timeout
    try:
        with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
            assert run_one(wrapper, "websocket.receive", {"reply_channel": REPLY, "path": "/"}, **kwargs)
    finally:
        if failing == "flush":
            pending_message_store.flush_timeout = saved
    assert len(consumer.calls) == 1
    assert caplog.records, "the failure must be logged"


def test_old_db_connections_are_closed_around_every_consumer_once():
    from django.db import close_old_connections

    for signal in (consumer_started, consumer_finished):
        sync_receivers, _async_receivers = signal._live_receivers(object)
        assert sync_receivers.count(close_old_connections) == 1
