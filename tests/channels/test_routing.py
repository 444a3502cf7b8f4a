"""channels.routing: matching, filters, named groups, include chopping, defaults, errors."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from channels.message import Message
from channels.routing import Router, connect_consumer, include, null_consumer, route, route_class

from .helpers import make_wrapper, run_consumer


def consumer_a(message, **kwargs):
    return "a", kwargs


def consumer_b(message, **kwargs):
    return "b", kwargs


def msg(channel, **content):
    return Message(content, channel, make_wrapper())


def test_route_matches_channel_and_filters():
    entry = route("websocket.connect", consumer_a, path=r"^/chat/$")
    assert entry.match(msg("websocket.connect", path="/chat/")) == (consumer_a, {})
    assert entry.match(msg("websocket.connect", path="/other/")) is None
    assert entry.match(msg("websocket.receive", path="/chat/")) is None
    assert entry.match(msg("websocket.connect")) is None  # key absent


def test_named_groups_become_kwargs_and_several_filters_must_all_match():
    entry = route("http.request", consumer_a, path=r"^/poll/(?P<n>\d+)/$", method=r"^POST$")
    assert entry.match(msg("http.request", path="/poll/7/", method="POST")) == (consumer_a, {"n": "7"})
    assert entry.match(msg("http.request", path="/poll/7/", method="GET")) is None


def test_re_match_anchors_at_start_only():
    entry = route("x", consumer_a, path=r"/a")
    assert entry.match(msg("x", path="/a/b")) is not None
    assert entry.match(msg("x", path="/b/a")) is None


def test_unnamed_group_is_an_error_at_load():
    with pytest.raises(ImproperlyConfigured, match="unnamed group"):
        route("x", consumer_a, path=r"^/(\d+)/$")
    with pytest.raises(ImproperlyConfigured, match="unnamed group"):
        include([], path=r"^/(chat)")


def test_bad_regex_and_bad_filter_type_are_errors():
    with pytest.raises(ImproperlyConfigured, match="not a valid regex"):
        route("x", consumer_a, path=r"^/(?P<a>")
    with pytest.raises(ImproperlyConfigured, match="must be a regex"):
        route("x", consumer_a, path=5)


def test_compiled_patterns_and_bytes_values():
    entry = route("x", consumer_a, path=re.compile(r"^/(?P<room>\w+)/$"))
    assert entry.match(msg("x", path=b"/lobby/")) == (consumer_a, {"room": "lobby"})
    assert entry.match(msg("x", path=b"\xff")) is None
    assert entry.match(msg("x", path=42)) is None


def test_consumer_by_dotted_path_and_errors():
    entry = route("x", "tests.channels.test_routing.consumer_b")
    assert entry.consumer is consumer_b
    with pytest.raises(ImproperlyConfigured, match="Cannot import consumer 'tests.channels.nope.x'"):
        route("x", "tests.channels.nope.x")
    with pytest.raises(ImproperlyConfigured, match="has no 'missing'"):
        route("x", "tests.channels.test_routing.missing")
    with pytest.raises(ImproperlyConfigured, match="not callable"):
        route("x", 42)


def test_several_channels_in_one_route():
    entry = route(["a", "b"], consumer_a)
    assert entry.channel_names() == {"a", "b"}
    assert entry.match(msg("b")) == (consumer_a, {})


def test_include_chops_prefix_and_merges_kwargs():
    chat = [route("websocket.connect", consumer_a, path=r"^/(?P<room>[a-z]+)/$")]
    entry = include(chat, path=r"^/chat")
    message = msg("websocket.connect", path="/chat/lobby/")
    assert entry.match(message) == (consumer_a, {"room": "lobby"})
    assert message["path"] == "/chat/lobby/"  # the consumer sees the original message
    assert entry.match(msg("websocket.connect", path="/lobby/")) is None


def test_nested_includes_chop_each_level():
    inner = [route("x", consumer_a, path=r"^/(?P<leaf>\w+)$")]
    middle = [include(inner, path=r"^/(?P<mid>\w+)")]
    outer = include(middle, path=r"^/api")
    assert outer.match(msg("x", path="/api/v2/thing")) == (consumer_a, {"mid": "v2", "leaf": "thing"})


def test_same_routing_under_two_prefixes():
    chat = [route("x", consumer_a, path=r"^/$")]
    router = Router([include(chat, path=r"^/one"), include(chat, path=r"^/two")])
    assert router.match(msg("x", path="/two/")) == (consumer_a, {})
    assert router.match(msg("x", path="/three/")) is None


def test_first_match_wins_and_fallthrough():
    router = Router([
        route("http.request", consumer_a, path=r"^/poll/$", method=r"^POST$"),
        route("http.request", consumer_b),
    ])
    assert router.match(msg("http.request", path="/poll/", method="POST"))[0] is consumer_a
    assert router.match(msg("http.request", path="/poll/", method="GET"))[0] is consumer_b


def test_include_by_dotted_path_and_errors():
    entry = include("tests.djangoproject.tutorial.http_routing")
    assert entry.channel_names() == {"http.request"}
    with pytest.raises(ImproperlyConfigured, match="Cannot import channel routing"):
        include("tests.djangoproject.missing_module.routing")


def test_dict_routing():
    router = Router({"a": consumer_a, "b": "tests.channels.test_routing.consumer_b"})
    assert router.channels == {"a", "b"}
    assert router.match(msg("b"))[0] is consumer_b


def test_entry_that_is_not_a_route_is_an_error():
    with pytest.raises(ImproperlyConfigured, match="Routing entry 1 .* not a route"):
        Router([route("a", consumer_a), ("b", consumer_b)])
    with pytest.raises(ImproperlyConfigured, match="must be a list"):
        Router(42)


def test_router_channels_and_add_route():
    router = Router([route("a", consumer_a), include([route("b", consumer_b)])])
    assert router.channels == {"a", "b"}
    router.add_route(route("c", consumer_a))
    assert router.channels == {"a", "b", "c"}


def test_check_default_adds_fallbacks_below_user_routes():
    from channels.handler import ViewConsumer

    router = Router([route("websocket.connect", consumer_a, path=r"^/mine/$")])
    router.check_default()
    assert router.channels >= {"http.request", "websocket.connect", "websocket.receive", "websocket.disconnect"}
    assert isinstance(router.match(msg("http.request", path="/"))[0], ViewConsumer)
    assert router.match(msg("websocket.connect", path="/mine/"))[0] is consumer_a
    assert router.match(msg("websocket.connect", path="/other/"))[0] is connect_consumer
    assert router.match(msg("websocket.receive", path="/x"))[0] is null_consumer
    assert router.match(msg("websocket.disconnect", path="/x"))[0] is null_consumer


def test_check_default_with_own_http_consumer():
    router = Router([])
    router.check_default(http_consumer=consumer_b)
    assert router.match(msg("http.request"))[0] is consumer_b


def test_default_connect_consumer_accepts():
    wrapper = make_wrapper()
    message = Message({"reply_channel": "t.r!1"}, "websocket.connect", wrapper)
    run_consumer(connect_consumer, message)
    assert wrapper.channel_layer.receive(["t.r!"]) == ("t.r!1", {"accept": True})


class ClassConsumer:
    def __init__(self, message, **kwargs):
        self.kwargs = kwargs

    @classmethod
    def channel_names(cls):
        return {"websocket.connect", "websocket.receive"}


def test_route_class():
    entry = route_class(ClassConsumer, path=r"^/(?P<room>\w+)/$")
    assert entry.channel_names() == {"websocket.connect", "websocket.receive"}
    assert entry.match(msg("websocket.receive", path="/x/")) == (ClassConsumer, {"room": "x"})
    with pytest.raises(ImproperlyConfigured, match="channel_names"):
        route_class(consumer_a)
