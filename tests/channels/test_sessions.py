"""channels.sessions: channel_session keyed by reply channel, http_session from cookie/query."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test.utils import override_settings

from channels.message import Message
from channels.sessions import (
    channel_and_http_session,
    channel_session,
    http_session,
    session_for_reply_channel,
    session_key_for_reply_channel,
)

from .helpers import make_wrapper, run_consumer, ws_content

pytestmark = pytest.mark.usefixtures("db")

_counter = iter(range(10**6))


def reply_name():
    return f"test.sess!c{next(_counter)}"


def message(channel, content):
    return Message(content, channel, make_wrapper())


def test_key_is_deterministic_and_fits():
    key = session_key_for_reply_channel("interface.AbC!conn7")
    assert key == session_key_for_reply_channel("interface.AbC!conn7")
    assert key != session_key_for_reply_channel("interface.AbC!conn8")
    assert key.startswith("chn") and len(key) == 32


def test_channel_session_persists_across_messages_of_one_socket():
    reply = reply_name()
    seen = []

    @channel_session
    def connect(message):
        message.channel_session["room"] = "lobby"

    @channel_session
    def receive(message):
        seen.append(message.channel_session.get("room"))

    run_consumer(connect, message("websocket.connect", ws_content(reply)))
    run_consumer(receive, message("websocket.receive", ws_content(reply, order=1, text="x")))
    run_consumer(receive, message("websocket.receive", ws_content(reply_name(), order=1, text="x")))
    assert seen == ["lobby", None]
    assert SessionStore(session_key=session_key_for_reply_channel(reply)).load()["room"] == "lobby"


def test_unmodified_session_is_not_stored():
    reply = reply_name()

    @channel_session
    def reader(message):
        message.channel_session.get("x")

    run_consumer(reader, message("websocket.receive", ws_content(reply, order=1, text="x")))
    assert not SessionStore().exists(session_key_for_reply_channel(reply))


def test_session_deleted_on_disconnect():
    reply = reply_name()

    @channel_session
    def consumer(message):
        message.channel_session["room"] = "x"

    run_consumer(consumer, message("websocket.connect", ws_content(reply)))
    key = session_key_for_reply_channel(reply)
    assert SessionStore().exists(key)
    run_consumer(consumer, message("websocket.disconnect", ws_content(reply, order=1, code=1000)))
    assert not SessionStore().exists(key)


def test_nested_channel_session_shares_one_session():
    reply = reply_name()

    @channel_session
    @channel_session
    def consumer(message):
        message.channel_session["n"] = 1

    run_consumer(consumer, message("websocket.connect", ws_content(reply)))
    assert session_for_reply_channel(reply)["n"] == 1


def test_channel_session_needs_reply_channel():
    @channel_session
    def consumer(message):
        pass

    with pytest.raises(ValueError, match="needs a reply_channel"):
        consumer(message("chat-messages", {"room": "a"}))


def test_channel_session_works_on_methods():
    class Thing:
        @channel_session
        def handle(self, message):
            message.channel_session["by"] = "method"

    reply = reply_name()
    Thing().handle(message("websocket.connect", ws_content(reply)))
    assert session_for_reply_channel(reply)["by"] == "method"


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_signed_cookie_engine_is_refused_clearly():
    @channel_session
    def consumer(message):
        pass

    with pytest.raises(ValueError, match="signed-cookie"):
        consumer(message("websocket.connect", ws_content(reply_name())))


def make_http_session(**data):
    session = SessionStore()
    session.update(data)
    session.save()
    return session.session_key


def test_http_session_from_cookie():
    key = make_http_session(colour="blue")
    cookie = f"other=1; {settings.SESSION_COOKIE_NAME}={key}".encode()
    seen = []

    @http_session
    def consumer(message):
        seen.append(message.http_session["colour"])
        message.http_session["visits"] = 1

    run_consumer(consumer, message("websocket.connect", ws_content(reply_name(), headers=[[b"cookie", cookie]])))
    assert seen == ["blue"]
    assert SessionStore(session_key=key).load()["visits"] == 1


def test_http_session_from_query_string_wins():
    key = make_http_session(colour="red")
    content = ws_content(reply_name(), query_string=f"a=1&session_key={key}".encode(),
                         headers=[[b"cookie", f"{settings.SESSION_COOKIE_NAME}=zzz".encode()]])
    seen = []

    @http_session
    def consumer(message):
        seen.append(message.http_session.get("colour"))

    run_consumer(consumer, message("websocket.connect", content))
    assert seen == ["red"]


def test_http_session_none_without_key():
    seen = []

    @http_session
    def consumer(message):
        seen.append(message.http_session)

    run_consumer(consumer, message("websocket.connect", ws_content(reply_name())))
    assert seen == [None]


def test_channel_and_http_session_keeps_http_session_for_later_messages():
    key = make_http_session(colour="green")
    reply = reply_name()
    seen = []

    @channel_and_http_session
    def consumer(message):
        seen.append(message.http_session.get("colour") if message.http_session is not None else None)

    headers = [[b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()]]
    run_consumer(consumer, message("websocket.connect", ws_content(reply, headers=headers)))
    run_consumer(consumer, message("websocket.receive", ws_content(reply, order=1, text="x")))
    assert seen == ["green", "green"]
