"""channels.auth: message.user from HTTP and channel sessions; transfer_user."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from channels.auth import (
    channel_and_http_session_user_from_http,
    channel_session_user,
    channel_session_user_from_http,
    http_session_user,
    transfer_user,
)
from channels.message import Message

from .helpers import make_wrapper, run_consumer, ws_content

pytestmark = pytest.mark.usefixtures("db")

_counter = iter(range(10**6))


def logged_in_cookie(username):
    user, _ = User.objects.get_or_create(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return [[b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()]]


def connect(reply, headers=()):
    return Message(ws_content(reply, headers=list(headers)), "websocket.connect", make_wrapper())


def receive(reply):
    return Message(ws_content(reply, order=1, text="hi"), "websocket.receive", make_wrapper())


def test_http_session_user_logged_in_and_anonymous():
    seen = []

    @http_session_user
    def consumer(message):
        seen.append((message.user.is_authenticated, message.user.username))

    run_consumer(consumer, connect("t.a!1", logged_in_cookie("alice")))
    run_consumer(consumer, connect("t.a!2"))
    assert seen == [(True, "alice"), (False, "")]


def test_channel_session_user_from_http_then_channel_session_user():
    reply = f"t.auth!{next(_counter)}"
    seen = []

    @channel_session_user_from_http
    def ws_add(message):
        seen.append(("connect", message.user.username, message.http_session is not None))

    @channel_session_user
    def ws_message(message):
        seen.append(("receive", message.user.username))

    run_consumer(ws_add, connect(reply, logged_in_cookie("bob")))
    run_consumer(ws_message, receive(reply))
    assert seen == [("connect", "bob", True), ("receive", "bob")]


def test_channel_session_user_anonymous_without_login():
    seen = []

    @channel_session_user
    def consumer(message):
        seen.append(message.user.is_anonymous)

    run_consumer(consumer, receive(f"t.auth!{next(_counter)}"))
    assert seen == [True]


def test_channel_and_http_session_user_from_http():
    reply = f"t.auth!{next(_counter)}"
    seen = []

    @channel_and_http_session_user_from_http
    def consumer(message):
        seen.append((message.user.username, message.http_session is not None))

    run_consumer(consumer, connect(reply, logged_in_cookie("carol")))
    assert seen == [("carol", True)]


def test_transfer_user_copies_and_logs_out():
    source = {SESSION_KEY: "1", BACKEND_SESSION_KEY: "b", HASH_SESSION_KEY: "h", "other": 1}
    target = {"mine": 2}
    transfer_user(source, target)
    assert target == {"mine": 2, SESSION_KEY: "1", BACKEND_SESSION_KEY: "b", HASH_SESSION_KEY: "h"}
    transfer_user({}, target)
    assert target == {"mine": 2}
