"""Table tests of the pure ASGI 1 translation (interface/_asgi1.py) and the Options checks."""

from __future__ import annotations

import pytest

from interface import _asgi1
from interface._accesslog import format_record
from interface._effects import AccessRecord
from interface._options import Options

PEER = ("127.0.0.1", 4000)


def scope(target=b"/", headers=(), client=PEER, websocket=False, **options):
    return _asgi1.request_scope(target, list(headers), client, ("10.0.0.1", 80), Options(**options), websocket=websocket)


@pytest.mark.parametrize("target, path, query", [
    (b"/", "/", b""),
    (b"/a%20b/c?x=%20&y", "/a b/c", b"x=%20&y"),
    (b"/%E2%9C%93", "/\u2713", b""),
    (b"/a%2Fb", "/a/b", b""),
    (b"http://example.com/abs/path?q", "/abs/path", b"q"),
    (b"/?", "/", b""),
])
def test_paths_are_percent_decoded_and_query_kept_raw(target, path, query):
    s = scope(target)
    assert (s.path, s.query_string) == (path, query)


def test_path_that_is_not_utf8_is_a_bad_request():
    with pytest.raises(_asgi1.BadRequest):
        scope(b"/%C3%28")


XFF = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.2"), (b"x-forwarded-proto", b"https"),
       (b"x-forwarded-port", b"443")]


@pytest.mark.parametrize("options, client, headers, ws, expect_client, expect_scheme", [
    ({}, PEER, XFF, False, ["127.0.0.1", 4000], "http"),  # proxy headers off
    ({"proxy_headers": True}, PEER, XFF, False, ["10.0.0.2", 443], "https"),  # rightmost untrusted hop
    ({"proxy_headers": True, "forwarded_allow_ips": ("127.0.0.1", "10.0.0.0/8")}, PEER, XFF, False,
     ["203.0.113.9", 443], "https"),
    ({"proxy_headers": True}, ("192.0.2.1", 1), XFF, False, ["192.0.2.1", 1], "http"),  # untrusted peer
    # every hop trusted: the leftmost is the client
    ({"proxy_headers": True, "forwarded_allow_ips": ("*",)}, ("192.0.2.1", 1), XFF, True, ["203.0.113.9", 443], "wss"),
    ({"proxy_headers": True}, PEER, [(b"x-forwarded-proto", b"http")], True, ["127.0.0.1", 4000], "ws"),
    ({"proxy_headers": True}, PEER, [(b"x-forwarded-proto", b"gopher")], False, ["127.0.0.1", 4000], "http"),
    ({}, None, [], True, None, "ws"),  # unix socket peer
])
def test_proxy_headers_trusted_only_from_allowed_peers(options, client, headers, ws, expect_client, expect_scheme):
    s = scope(headers=headers, client=client, websocket=ws, **options)
    assert s.client == expect_client and s.scheme == expect_scheme


def test_root_path_from_options_and_trusted_daphne_header():
    assert scope(root_path="/app").root_path == "/app"
    s = scope(headers=[(b"daphne-root-path", b"/mounted%20here")], proxy_headers=True, root_path="/app")
    assert s.root_path == "/mounted here"
    assert all(name != b"daphne-root-path" for name, _ in s.headers)
    assert scope(headers=[(b"daphne-root-path", b"/x")], root_path="/app").root_path == "/app"


def test_headers_lower_cased_order_and_duplicates_kept_underscores_dropped():
    headers = [(b"X-A", b"1"), (b"x_b", b"2"), (b"X-A", b"3"), (b"Cookie", b"c")]
    assert _asgi1.clean_headers(headers) == [[b"x-a", b"1"], [b"x-a", b"3"], [b"cookie", b"c"]]


@pytest.mark.parametrize("message, started, expected", [
    ({"status": 200}, False, _asgi1.ResponseStart(200, [], b"", False)),
    ({"status": 201, "headers": [[b"A", b"1"], ["b", "2"]], "content": b"x", "more_content": True}, False,
     _asgi1.ResponseStart(201, [(b"A", b"1"), (b"b", b"2")], b"x", True)),
    ({"content": b"more", "more_content": True}, True, _asgi1.ResponseChunk(b"more", True)),
    ({}, True, _asgi1.ResponseChunk(b"", False)),
])
def test_http_reply_parsing(message, started, expected):
    assert _asgi1.parse_http_reply(message, started) == expected


@pytest.mark.parametrize("message, started", [
    ({"content": b"x"}, False),  # first message without status
    ({"status": 200}, True),  # a second Response
    ({"status": 99}, False),
    ({"status": True}, False),
    ({"status": 200, "content": "str"}, False),
    ({"status": 200, "headers": [[b"a"]]}, False),
    ({"status": 200, "headers": [[b"a", 1]]}, False),
    ({"status": 200, "headers": [["\u2713", b"v"]]}, False),
    ({"request": {}}, False),  # server push: not over HTTP/1.1
])
def test_bad_http_replies_raise(message, started):
    with pytest.raises(_asgi1.ReplyError):
        _asgi1.parse_http_reply(message, started)


@pytest.mark.parametrize("message, expected", [
    ({"accept": True}, _asgi1.WebSocketReply(True, None, None)),
    ({"accept": False}, _asgi1.WebSocketReply(False, None, None)),
    ({"text": ""}, _asgi1.WebSocketReply(None, "", None)),
    ({"bytes": b""}, _asgi1.WebSocketReply(None, b"", None)),
    ({"text": "x", "close": True}, _asgi1.WebSocketReply(None, "x", 1000)),
    ({"close": 4000}, _asgi1.WebSocketReply(None, None, 4000)),
    ({"close": False, "text": None, "bytes": b"b"}, _asgi1.WebSocketReply(None, b"b", None)),
])
def test_websocket_reply_parsing(message, expected):
    assert _asgi1.parse_websocket_reply(message) == expected


@pytest.mark.parametrize("message", [
    {"text": "a", "bytes": b"b"},
    {"text": b"bytes"},
    {"bytes": "str"},
    {"close": 1005},
    {"close": 2999},
    {"close": "yes"},
    {"unknown": 1},
])
def test_bad_websocket_replies_raise(message):
    with pytest.raises(_asgi1.ReplyError):
        _asgi1.parse_websocket_reply(message)


@pytest.mark.parametrize("code, ok", [(1000, True), (1001, True), (1004, False), (1005, False), (1006, False),
                                      (1011, True), (1015, False), (2000, False), (3000, True), (4999, True),
                                      (5000, False)])
def test_valid_close_codes(code, ok):
    assert _asgi1.valid_close_code(code) is ok


def test_message_builders_match_the_spec_keys():
    s = scope(b"/p?q", websocket=True)
    connect = _asgi1.websocket_connect(s, "interface.X!1")
    assert set(connect) == {"reply_channel", "scheme", "path", "query_string", "root_path", "headers", "client",
                            "server", "order"}
    assert _asgi1.websocket_receive("r!1", "/p", 3, b"\x00") == {
        "reply_channel": "r!1", "path": "/p", "order": 3, "text": None, "bytes": b"\x00"}
    assert _asgi1.websocket_disconnect("r!1", "/p", 1006, 4)["order"] == 4
    assert _asgi1.body_chunk(b"c", True) == {"content": b"c", "closed": False, "more_content": True}
    assert _asgi1.body_closed()["closed"] is True
    assert _asgi1.new_body_channel().startswith("http.request.body?")
    assert _asgi1.new_body_channel() != _asgi1.new_body_channel()


def test_access_log_lines_use_daphnes_format():
    line = format_record(AccessRecord(["127.0.0.1", 5000], "GET /x", 200, 12), now=0)
    assert line.startswith("127.0.0.1:5000 - - [") and line.endswith('] "GET /x" 200 12\n')
    assert format_record(AccessRecord(None, "WSCONNECT /ws"), now=0).endswith('"WSCONNECT /ws" - -\n')


@pytest.mark.parametrize("bad", [{"http_timeout": 0}, {"max_connections": 0}, {"max_body_size": -1},
                                 {"websocket_timeout": 0}, {"ping_interval": "x"}])
def test_options_reject_nonsense(bad):
    with pytest.raises(ValueError):
        Options(**bad)


def test_websocket_lifetime_defaults_to_group_expiry():
    assert Options().websocket_lifetime(86400) == 86400
    assert Options(websocket_timeout=-1).websocket_lifetime(86400) is None
    assert Options(websocket_timeout=60).websocket_lifetime(86400) == 60
