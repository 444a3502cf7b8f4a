"""channels.generic: BaseConsumer dispatch, WebSocket and JSON consumers, demultiplexer."""

from __future__ import annotations

import json

import pytest

from channels.exceptions import SendNotAvailableOnDemultiplexer
from channels.generic import BaseConsumer
from channels.generic.websockets import (
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
    WebsocketMultiplexer,
)
from channels.routing import Router
from channels.sessions import ORDER_KEY, session_for_reply_channel

from .helpers import dispatch, drain, make_wrapper, ws_content

pytestmark = pytest.mark.usefixtures("db")

_counter = iter(range(10**6))
events = []


class Echo(WebsocketConsumer):
    groups = ["echoers"]

    def connect(self, message, **kwargs):
        events.append(("connect", kwargs))
        super().connect(message, **kwargs)

    def receive(self, text=None, bytes=None, **kwargs):
        if text == "close":
            self.close(4000)
        elif text is not None:
            self.send(text=text.upper())
        else:
            self.send(bytes=bytes[::-1])

    def disconnect(self, message, **kwargs):
        events.append(("disconnect", kwargs))


class Json(JsonWebsocketConsumer):
    channel_session = True
    strict_ordering = True

    def receive(self, content, **kwargs):
        self.message.channel_session["last"] = content
        self.send({"got": content, "room": kwargs.get("room")})


class Chat(JsonWebsocketConsumer):
    def receive(self, content, multiplexer=None, **kwargs):
        multiplexer.send({"echo": content})


class Status(JsonWebsocketConsumer):
    def connect(self, message, multiplexer=None, **kwargs):
        multiplexer.send({"status": "up"})

    def receive(self, content, multiplexer=None, **kwargs):
        self.send({"status": content})


class Demux(WebsocketDemultiplexer):
    consumers = {"chat": Chat, "status": Status}


def socket(routing):
    wrapper = make_wrapper(routing)
    prefix = f"t.gen{next(_counter)}!"
    return wrapper, prefix + "c", prefix


def test_base_consumer_channel_names_and_as_route():
    class Mine(BaseConsumer):
        method_mapping = {"a": "on_a", "b": "on_b"}

        def on_a(self, message, **kwargs):
            events.append(("a", kwargs))

    assert Mine.channel_names() == {"a", "b"}
    router = Router([Mine.as_route(path=r"^/(?P<x>\w+)$")])
    wrapper = make_wrapper(router.root.routing)
    events.clear()
    dispatch(wrapper, "a", {"path": "/q"})
    assert events == [("a", {"x": "q"})]


def test_websocket_consumer_lifecycle():
    wrapper, reply, prefix = socket([Echo.as_route(path=r"^/echo/(?P<room>\w+)/$")])
    events.clear()
    dispatch(wrapper, "websocket.connect", ws_content(reply, "/echo/a/"))
    assert drain(wrapper.channel_layer, prefix) == [{"accept": True}]
    assert wrapper.channel_layer.group_channels("echoers") == [reply]
    dispatch(wrapper, "websocket.receive", ws_content(reply, "/echo/a/", 1, "hi"))
    dispatch(wrapper, "websocket.receive", {**ws_content(reply, "/echo/a/", 2), "bytes": b"abc", "text": None})
    dispatch(wrapper, "websocket.receive", ws_content(reply, "/echo/a/", 3, "close"))
    assert drain(wrapper.channel_layer, prefix) == [{"text": "HI"}, {"bytes": b"cba"}, {"close": 4000}]
    Echo.group_send("echoers", text="all")
    assert drain(wrapper.channel_layer, prefix) == []  # group_send uses the default layer
    dispatch(wrapper, "websocket.disconnect", ws_content(reply, "/echo/a/", 4, code=1000))
    assert wrapper.channel_layer.group_channels("echoers") == []
    assert events == [("connect", {"room": "a"}), ("disconnect", {"room": "a"})]


def test_send_needs_content():
    wrapper, reply, _ = socket([Echo.as_route()])
    with pytest.raises(ValueError, match="text or bytes"):
        Echo.__new__(Echo).send()


def test_json_consumer_with_session_and_strict_ordering():
    wrapper, reply, prefix = socket([Json.as_route(path=r"^/(?P<room>\w+)/$")])
    dispatch(wrapper, "websocket.connect", ws_content(reply, "/r1/"))
    wrapper.channel_layer.send("websocket.receive", ws_content(reply, "/r1/", 2, json.dumps({"n": 2})))
    wrapper.channel_layer.send("websocket.receive", ws_content(reply, "/r1/", 1, json.dumps({"n": 1})))
    for _ in range(3):
        channel, content = wrapper.channel_layer.receive(["websocket.receive"])
        if channel:
            dispatch(wrapper, channel, content)
    frames = [json.loads(m["text"]) for m in drain(wrapper.channel_layer, prefix) if "text" in m]
    assert frames == [{"got": {"n": 1}, "room": "r1"}, {"got": {"n": 2}, "room": "r1"}]
    session = session_for_reply_channel(reply)
    assert session["last"] == {"n": 2} and session[ORDER_KEY] == 3


def test_json_consumer_rejects_binary():
    wrapper, reply, _ = socket([Json.as_route()])
    dispatch(wrapper, "websocket.connect", ws_content(reply, "/x/"))
    with pytest.raises(ValueError, match="without text"):
        dispatch(wrapper, "websocket.receive", {**ws_content(reply, "/x/", 1), "bytes": b"x", "text": None})


def test_demultiplexer_routes_streams():
    wrapper, reply, prefix = socket([Demux.as_route()])
    dispatch(wrapper, "websocket.connect", ws_content(reply, "/"))
    connect_frames = drain(wrapper.channel_layer, prefix)
    assert connect_frames[0] == {"accept": True}
    assert json.loads(connect_frames[-1]["text"]) == {"stream": "status", "payload": {"status": "up"}}
    frame = json.dumps({"stream": "chat", "payload": {"text": "hi"}})
    dispatch(wrapper, "websocket.receive", ws_content(reply, "/", 1, frame))
    frame = json.dumps({"stream": "status", "payload": {"q": 1}})
    dispatch(wrapper, "websocket.receive", ws_content(reply, "/", 2, frame))
    assert [json.loads(m["text"]) for m in drain(wrapper.channel_layer, prefix)] == [
        {"stream": "chat", "payload": {"echo": {"text": "hi"}}},
        {"stream": "status", "payload": {"status": {"q": 1}}},
    ]
    with pytest.raises(ValueError, match="unknown stream"):
        dispatch(wrapper, "websocket.receive", ws_content(reply, "/", 3, json.dumps({"stream": "x", "payload": {}})))
    with pytest.raises(ValueError, match="'stream' and 'payload'"):
        dispatch(wrapper, "websocket.receive", ws_content(reply, "/", 4, json.dumps([1])))
    with pytest.raises(SendNotAvailableOnDemultiplexer):
        Demux.group_send("g", {"x": 1})


def test_multiplexer_encode():
    assert json.loads(WebsocketMultiplexer.encode("s", {"a": 1})["text"]) == {"stream": "s", "payload": {"a": 1}}
