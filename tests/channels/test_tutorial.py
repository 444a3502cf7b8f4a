"""The Getting Started consumers (tests/djangoproject/tutorial.py) through the real router.

Each test installs a fresh in-memory layer as ``channel_layers["default"]`` (the tutorial
code uses ``Group("chat")`` and ``Channel("chat-messages")`` without naming a layer) and
dispatches messages as a worker would.
"""

from __future__ import annotations

import json
import random

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from channels.asgi import ChannelLayerWrapper, channel_layers
from channels.layers.inmemory import InMemoryChannelLayer
from tests.djangoproject.chatapp.models import ChatMessage

from .helpers import dispatch, drain, pump, ws_content

pytestmark = pytest.mark.usefixtures("db")

_counter = iter(range(10**6))


@pytest.fixture
def wrapper():
    fresh = ChannelLayerWrapper(InMemoryChannelLayer(), "default", "tests.djangoproject.routing.channel_routing")
    fresh.router.check_default()
    old = channel_layers.set("default", fresh)
    try:
        yield fresh
    finally:
        channel_layers.set("default", old)


class Socket:
    """One simulated WebSocket: its reply channel and next order."""

    def __init__(self, wrapper, path, query=b"", headers=()):
        self.wrapper = wrapper
        self.prefix = f"t.tut{next(_counter)}!"
        self.reply = self.prefix + "c"
        self.path = path
        self.order = 0
        self.connect_content = ws_content(self.reply, path=path, query_string=query, headers=list(headers))

    def connect(self):
        dispatch(self.wrapper, "websocket.connect", self.connect_content)
        self.order = 1
        return self.received()

    def send(self, text):
        dispatch(self.wrapper, "websocket.receive", ws_content(self.reply, self.path, self.order, text))
        self.order += 1

    def disconnect(self):
        dispatch(self.wrapper, "websocket.disconnect", ws_content(self.reply, self.path, self.order, code=1000))

    def received(self):
        return drain(self.wrapper.channel_layer, self.prefix)


def http_request(wrapper, path, method="GET"):
    prefix = f"t.http{next(_counter)}!"
    dispatch(wrapper, "http.request", {
        "reply_channel": prefix + "r", "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "query_string": b"", "root_path": "", "headers": [[b"host", b"127.0.0.1"]],
        "body": b"", "client": ["127.0.0.1", 5000], "server": ["127.0.0.1", 80],
    })
    chunks = drain(wrapper.channel_layer, prefix)
    return chunks[0]["status"], b"".join(chunk.get("content", b"") for chunk in chunks)


def login_cookie(username):
    user, _ = User.objects.get_or_create(username=username)
    session = SessionStore()
    session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user.get_session_auth_hash()})
    session.save()
    return [b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()]


def test_http_consumer(wrapper):
    assert http_request(wrapper, "/consumer/abc") == (200, b"Hello world! You asked for /consumer/abc")


def test_poll_route_by_method_and_fallthrough_to_views(wrapper):
    assert http_request(wrapper, "/poll/", "POST") == (200, b"polled POST")
    assert http_request(wrapper, "/poll/", "GET")[0] == 404  # Django's URLconf has no /poll/
    assert http_request(wrapper, "/hello/") == (200, b"Hello world! You asked for /hello/")


def test_echo(wrapper):
    socket = Socket(wrapper, "/echo/")
    assert socket.connect() == [{"accept": True}]
    socket.send("hello world")
    assert socket.received() == [{"text": "hello world"}]


def test_groups(wrapper):
    one, two = Socket(wrapper, "/groups/"), Socket(wrapper, "/groups/")
    assert one.connect() == [{"accept": True}] and two.connect() == [{"accept": True}]
    one.send("hi")
    assert one.received() == two.received() == [{"text": "[user] hi"}]
    two.disconnect()
    one.send("again")
    assert one.received() == [{"text": "[user] again"}] and two.received() == []


def test_persisting_data_room_from_path_username_from_query(wrapper):
    bob = Socket(wrapper, "/rooms/lobby/", query=b"username=bob")
    eve = Socket(wrapper, "/rooms/lobby/", query=b"username=eve")
    other = Socket(wrapper, "/rooms/kitchen/", query=b"username=ann")
    for socket in (bob, eve, other):
        assert socket.connect() == [{"accept": True}]
    bob.send("hi all")
    expected = [{"text": json.dumps({"text": "hi all", "username": "bob"})}]
    assert bob.received() == expected and eve.received() == expected and other.received() == []
    nobody = Socket(wrapper, "/rooms/lobby/")
    assert nobody.connect() == [{"accept": True}, {"close": True}]


def test_authentication_groups_by_username_initial(wrapper):
    alice = Socket(wrapper, "/auth/", headers=[login_cookie("alice")])
    adam = Socket(wrapper, "/auth/", headers=[login_cookie("adam")])
    bert = Socket(wrapper, "/auth/", headers=[login_cookie("bert")])
    for socket in (alice, adam, bert):
        assert socket.connect() == [{"accept": True}]
    alice.send("a-team")
    assert alice.received() == adam.received() == [{"text": "a-team"}]
    assert bert.received() == []
    adam.disconnect()
    alice.send("again")
    assert adam.received() == []


def test_security_allowed_hosts_only(wrapper):
    good = Socket(wrapper, "/secure/", headers=[login_cookie("sam"), [b"origin", b"http://127.0.0.1:8000"]])
    assert good.connect() == [{"accept": True}]
    evil = Socket(wrapper, "/secure/", headers=[login_cookie("sam"), [b"origin", b"http://evil.example"]])
    assert evil.connect() == [{"accept": False}]
    missing = Socket(wrapper, "/secure/", headers=[login_cookie("sam")])
    assert missing.connect() == [{"accept": False}]


def test_routing_include_with_room_kwarg(wrapper):
    one, two = Socket(wrapper, "/chat/lobby/"), Socket(wrapper, "/chat/lobby/")
    assert one.connect() == [{"accept": True}] and two.connect() == [{"accept": True}]
    assert sorted(wrapper.channel_layer.group_channels("chat-lobby")) == sorted([one.reply, two.reply])
    one.disconnect()
    assert wrapper.channel_layer.group_channels("chat-lobby") == [two.reply]


def test_models_chat_messages_channel_saves_and_broadcasts(wrapper):
    room = f"room{next(_counter)}"
    one, two = Socket(wrapper, f"/{room}/"), Socket(wrapper, f"/{room}/")
    assert one.connect() == [{"accept": True}] and two.connect() == [{"accept": True}]
    one.send("saved line")
    assert one.received() == []  # not broadcast yet: queued on chat-messages
    assert pump(wrapper, ["chat-messages"]) == 1
    assert list(ChatMessage.objects.filter(room=room).values_list("message", flat=True)) == ["saved line"]
    assert one.received() == two.received() == [{"text": "saved line"}]
    one.disconnect()


def test_chat_messages_sent_from_outside_a_consumer(wrapper):
    # "we could add messages onto the chat-messages channel from anywhere": a view,
    # a signal handler, a cron job. Outside a consumer the send goes at once.
    from channels import Channel

    room = f"room{next(_counter)}"
    listener = Socket(wrapper, f"/{room}/")
    listener.connect()
    Channel("chat-messages").send({"room": room, "message": "from cron"})
    pump(wrapper, ["chat-messages"])
    assert listener.received() == [{"text": "from cron"}]


def test_enforce_ordering_counter_with_shuffled_burst(wrapper):
    socket = Socket(wrapper, "/ordering/")
    assert socket.connect() == [{"accept": True}]
    frames = [ws_content(socket.reply, "/ordering/", n, f"frame {n}") for n in range(1, 51)]
    random.Random(3).shuffle(frames)
    for content in frames:
        wrapper.channel_layer.send("websocket.receive", content)
    pump(wrapper, ["websocket.receive"])
    assert [m["text"] for m in socket.received()] == [f"{n}: frame {n}" for n in range(1, 51)]
    socket.order = 51
    socket.disconnect()
    assert wrapper.channel_layer.group_channels("chat") == []
