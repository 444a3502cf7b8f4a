"""worker.Worker: the real receive loop in threads of this process, on the in-memory layer."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.worker.helpers import make_wrapper, running, wait_for

from channels.exceptions import ConsumeLater
from channels.routing import route
from worker import Worker, filter_channels

REPLY = "interface.loop!c"


def test_filter_channels_applies_only_then_exclude():
    names = ["http.request", "websocket.connect", "websocket.receive", "chat.send"]
    assert filter_channels(names) == sorted(names)
    assert filter_channels(names, only_channels=["websocket.*"]) == ["websocket.connect", "websocket.receive"]
    assert filter_channels(names, exclude_channels=["websocket.*", "http.*"]) == ["chat.send"]
    assert filter_channels(names, ["websocket.*"], ["*.receive"]) == ["websocket.connect"]


def test_listen_channels_come_from_the_router_and_filters():
    wrapper = make_wrapper([route("a.one", print), route(["a.two", "b.three"], print)])
    assert Worker(wrapper, signal_handlers=False).listen_channels() == ["a.one", "a.two", "b.three"]
    assert Worker(wrapper, only_channels=["a.*"], exclude_channels=["*.two"]).listen_channels() == ["a.one"]


def test_bad_arguments_are_refused():
    wrapper = make_wrapper([route("a.one", print)])
    for kwargs in ({"threads": 0}, {"max_messages": -1}, {"max_messages_jitter": "3"}):
        with pytest.raises(ValueError):
            Worker(wrapper, **kwargs)


def test_no_channel_to_listen_on_exits_1(caplog):
    wrapper = make_wrapper([route("a.one", print)])
    with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
        code = Worker(wrapper, only_channels=["nothing.*"], signal_handlers=False).run()
    assert code == 1 and "No channels to listen on" in caplog.text


def test_messages_are_dispatched_and_replies_flushed():
    def echo(message):
        message.reply_channel.send({"text": message["text"].upper()})

    wrapper = make_wrapper([route("websocket.receive", echo)])
    layer = wrapper.channel_layer
    with running(wrapper):
        for word in ("a", "b", "c"):
            layer.send("websocket.receive", {"reply_channel": REPLY, "path": "/", "text": word})
        got = []

        def collect():
            _, message = layer.receive(["interface.loop!"], block=False)
            if message is not None:
                got.append(message["text"])
            return len(got) == 3

        wait_for(collect)
    assert got == ["A", "B", "C"]


def test_a_failing_consumer_does_not_stop_the_worker(caplog):
    done = []

    def consumer(message):
        if message["n"] % 2:
            raise ValueError(f"odd {message['n']}")
        done.append(message["n"])

    wrapper = make_wrapper([route("test.mixed", consumer)])
    with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
        with running(wrapper) as handle:
            for n in range(6):
                wrapper.channel_layer.send("test.mixed", {"n": n})
            wait_for(lambda: handle.worker.messages_handled == 6)
    assert done == [0, 2, 4]
    assert sorted(r.exc_info[1].args[0] for r in caplog.records if r.exc_info) == ["odd 1", "odd 3", "odd 5"]


def test_consume_later_runs_the_message_again():
    attempts = []

    def consumer(message):
        attempts.append(message.get("__retries__", 0))
        if len(attempts) < 3:
            raise ConsumeLater()

    wrapper = make_wrapper([route("test.later", consumer)])
    with running(wrapper):
        wrapper.channel_layer.send("test.later", {"x": 1})
        wait_for(lambda: len(attempts) == 3)
    assert attempts == [0, 1, 2]


def test_threads_consume_concurrently():
    barrier = threading.Barrier(3, timeout=5)
    passed = []

    def consumer(message):
        barrier.wait()  # only returns when 3 consumers run at the same time
        passed.append(threading.current_thread().name)

    wrapper = make_wrapper([route("test.parallel", consumer)])
    with running(wrapper, threads=3):
        for n in range(3):
            wrapper.channel_layer.send("test.parallel", {"n": n})
        wait_for(lambda: len(passed) == 3)
    assert len(set(passed)) == 3


def test_max_messages_exits_after_that_many():
    handled = []
    wrapper = make_wrapper([route("test.count", lambda m: handled.append(m["n"]))])
    for n in range(5):
        wrapper.channel_layer.send("test.count", {"n": n})
    with running(wrapper, max_messages=3) as handle:
        assert handle.join(5) == 0
    assert handled == [0, 1, 2]
    assert wrapper.channel_layer.receive(["test.count"])[1] == {"n": 3}


def test_max_messages_jitter_stays_in_range():
    wrapper = make_wrapper([route("test.count", print)])
    limits = {Worker(wrapper, max_messages=10, max_messages_jitter=5).max_messages for _ in range(50)}
    assert limits <= set(range(10, 16)) and len(limits) > 1
    assert Worker(wrapper, max_messages=0, max_messages_jitter=5).max_messages == 0


def test_graceful_stop_finishes_the_current_message():
    entered, release, finished = threading.Event(), threading.Event(), []

    def slow(message):
        entered.set()
        release.wait(5)
        finished.append(message["n"])

    wrapper = make_wrapper([route("test.slow", slow)])
    with running(wrapper) as handle:
        wrapper.channel_layer.send("test.slow", {"n": 1})
        wrapper.channel_layer.send("test.slow", {"n": 2})
        assert entered.wait(5)
        handle.worker.stop()
        time.sleep(0.3)
        assert handle.thread.is_alive(), "stop() must wait for the running consumer"
        release.set()
        assert handle.join(5) == 0
    assert finished == [1]  # the second message was not started
    assert wrapper.channel_layer.receive(["test.slow"])[1] == {"n": 2}


def test_quit_returns_at_once_even_while_a_consumer_runs():
    entered, release = threading.Event(), threading.Event()

    def stuck(message):
        entered.set()
        release.wait(10)

    wrapper = make_wrapper([route("test.stuck", stuck)])
    with running(wrapper) as handle:
        wrapper.channel_layer.send("test.stuck", {})
        assert entered.wait(5)
        handle.worker.quit()
        assert handle.join(2) == 0
    release.set()


def test_heartbeat_while_idle_and_not_while_a_consumer_hangs():
    beats = []
    entered, release = threading.Event(), threading.Event()

    def hang(message):
        entered.set()
        release.wait(10)

    wrapper = make_wrapper([route("test.hang", hang)])
    with running(wrapper, heartbeat=lambda: beats.append(time.monotonic())):
        wait_for(lambda: len(beats) >= 3, timeout=3)  # idle: beats keep coming
        wrapper.channel_layer.send("test.hang", {})
        assert entered.wait(5)
        time.sleep(0.6)  # let a beat interval pass with the consumer still inside
        frozen = len(beats)
        time.sleep(1.2)
        assert len(beats) == frozen, "a hung consumer must stop the heartbeat"
        release.set()
        wait_for(lambda: len(beats) > frozen, timeout=3)
    gaps = [b - a for a, b in zip(beats, beats[1:frozen])]
    assert max(gaps, default=0) < 1.0


def test_held_sends_leave_after_each_consumer_in_threads():
    def consumer(message):
        for part in range(3):
            message.reply_channel.send({"text": f"{message['n']}.{part}"})
            time.sleep(0.01)

    wrapper = make_wrapper([route("test.multi", consumer)])
    layer = wrapper.channel_layer
    with running(wrapper, threads=2):
        for n in range(4):
            layer.send("test.multi", {"n": n, "reply_channel": f"interface.loop!c{n}"})
        got = {}

        def collect():
            channel, message = layer.receive(["interface.loop!"], block=False)
            if message is not None:
                got.setdefault(channel, []).append(message["text"])
            return sum(map(len, got.values())) == 12

        wait_for(collect)
    for n in range(4):
        assert got[f"interface.loop!c{n}"] == [f"{n}.0", f"{n}.1", f"{n}.2"]


def test_worker_ready_signal_and_verbosity_2_logging(caplog):
    from channels.signals import worker_ready

    ready = []
    receiver = lambda sender, **kw: ready.append(sender)  # noqa: E731
    worker_ready.connect(receiver)
    wrapper = make_wrapper([route("test.v2", lambda m: None)])
    try:
        with caplog.at_level(logging.INFO, logger="django.channels.worker"):
            with running(wrapper, verbosity=2) as handle:
                wrapper.channel_layer.send("test.v2", {})
                wait_for(lambda: handle.worker.messages_handled == 1)
    finally:
        worker_ready.disconnect(receiver)
    assert ready == [handle.worker]
    assert "Listening on channels test.v2" in caplog.text
    assert any(r.getMessage().startswith("test.v2 -> ") for r in caplog.records)


def test_http_request_through_the_default_view_consumer():
    from channels.handler import ViewConsumer

    wrapper = make_wrapper([route("http.request", ViewConsumer())])
    layer = wrapper.channel_layer
    with running(wrapper, threads=2):
        layer.send("http.request", {
            "reply_channel": "interface.loop!h1", "http_version": "1.1", "method": "GET",
            "path": "/hello/", "query_string": b"", "headers": [[b"host", b"127.0.0.1"]],
        })
        reply = wait_for(lambda: layer.receive(["interface.loop!"], block=False)[1])
    assert reply["status"] == 200
    assert reply["content"] == b"Hello world! You asked for /hello/"


def test_malformed_message_is_dropped_and_the_worker_goes_on(caplog):
    handled = []
    wrapper = make_wrapper([route("test.m", lambda m: handled.append(m["n"]))])
    with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
        with running(wrapper) as handle:
            wrapper.channel_layer.send("test.m", {"n": 1, "reply_channel": 12345, "__retries__": "x"})
            wrapper.channel_layer.send("test.m", {"n": 2})
            wait_for(lambda: handled == [2] and handle.worker.messages_handled == 2)
    assert "malformed message on test.m" in caplog.text


def test_sys_exit_in_a_consumer_stops_the_worker_with_code_1():
    import sys

    wrapper = make_wrapper([route("test.exit", lambda m: sys.exit(3))])
    with running(wrapper, threads=2) as handle:
        wrapper.channel_layer.send("test.exit", {})
        assert handle.join(5) == 1


def test_an_unreachable_redis_is_one_log_line_a_second_not_a_traceback(caplog):
    # A real Redis layer pointed at a port nobody listens on: the broker is "down".
    import socket

    from channels.asgi import ChannelLayerWrapper
    from channels.layers.redis import RedisChannelLayer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    layer = RedisChannelLayer(hosts=[("127.0.0.1", dead_port)], connect_timeout=0.2)
    wrapper = ChannelLayerWrapper(layer, "default", [route("test.down", lambda message: None)])
    try:
        with caplog.at_level(logging.ERROR, logger="django.channels.worker"):
            with running(wrapper):
                wait_for(lambda: any("unreachable" in r.getMessage() for r in caplog.records))
    finally:
        layer.close()
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert down and all(r.exc_info is None for r in down)
    assert not [r for r in caplog.records if r.exc_info]
