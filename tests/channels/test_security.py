"""channels.security.websockets: Origin checks at the WebSocket handshake."""

from __future__ import annotations

import pytest
from django.test.utils import override_settings

from channels.message import Message
from channels.security.websockets import AllowedHostsOnlyOriginValidator, BaseOriginValidator, allowed_hosts_only

from .helpers import drain, make_wrapper, run_consumer, ws_content


def run_with_origin(decorated_factory, origin, channel="websocket.connect"):
    wrapper = make_wrapper()
    ran = []

    @decorated_factory
    def consumer(message):
        ran.append(True)
        message.reply_channel.send({"accept": True})

    headers = [[b"host", b"127.0.0.1"]]
    if origin is not None:
        headers.append([b"origin", origin])
    message = Message(ws_content("t.o!1", headers=headers), channel, wrapper)
    run_consumer(consumer, message)
    return bool(ran), drain(wrapper.channel_layer, "t.o!")


@pytest.mark.parametrize("origin", [b"http://127.0.0.1:8000", b"https://localhost", b"http://testserver"])
def test_allowed_origins(origin):
    assert run_with_origin(allowed_hosts_only, origin) == (True, [{"accept": True}])


@pytest.mark.parametrize("origin", [
    None,                          # missing
    b"http://evil.example",        # foreign
    b"null",                       # opaque origin (file://, sandboxed iframe)
    b"127.0.0.1",                  # no scheme
    b"http://127.0.0.1:99999999",  # malformed port
    b"http://[::1",                # malformed IPv6
    b"http://\xff",                # not ASCII
    b"",
])
def test_rejected_origins(origin):
    assert run_with_origin(allowed_hosts_only, origin) == (False, [{"accept": False}])


@override_settings(ALLOWED_HOSTS=[], DEBUG=True)
def test_debug_with_empty_allowed_hosts_allows_localhost_only():
    assert run_with_origin(allowed_hosts_only, b"http://localhost:8000")[0]
    assert run_with_origin(allowed_hosts_only, b"http://[::1]:8000")[0]
    assert not run_with_origin(allowed_hosts_only, b"http://example.com")[0]


@override_settings(ALLOWED_HOSTS=[".example.com"], DEBUG=False)
def test_subdomain_wildcard():
    assert run_with_origin(allowed_hosts_only, b"https://chat.example.com")[0]
    assert not run_with_origin(allowed_hosts_only, b"https://example.com.evil.net")[0]


def test_custom_validator_subclass():
    class OnlyHttps(BaseOriginValidator):
        def validate_origin(self, message, origin):
            return origin.startswith("https://")

    assert run_with_origin(OnlyHttps, b"https://anything")[0]
    assert not run_with_origin(OnlyHttps, b"http://anything")[0]
    assert not run_with_origin(BaseOriginValidator, b"https://anything")[0]  # base allows none


def test_only_for_connect():
    with pytest.raises(ValueError, match="websocket.connect consumers only"):
        run_with_origin(allowed_hosts_only, b"http://localhost", channel="websocket.receive")


def test_keeps_consumer_name_and_kwargs():
    @allowed_hosts_only
    def ws_add(message, room):
        message.reply_channel.send({"text": room})

    assert ws_add.__name__ == "ws_add" and isinstance(ws_add, AllowedHostsOnlyOriginValidator)
    wrapper = make_wrapper()
    message = Message(ws_content("t.o!1", headers=[[b"origin", b"http://localhost"]]), "websocket.connect", wrapper)
    run_consumer(ws_add, message, room="lobby")
    assert drain(wrapper.channel_layer, "t.o!") == [{"text": "lobby"}]
