"""Byte-level tests of the sans-I/O HTTP core (interface/_http.py): no sockets, no loop."""

from __future__ import annotations

import pytest

from interface._effects import CancelSends, LayerSend, OnFull, Refusal, Upgrade
from interface._http import HTTPState
from interface._lifecycle import Lifecycle, LocalProtocolError
from interface._options import BODY_CHUNK_SIZE

from .helpers import PREFIX, http_core, parse_responses, request, sends_of, split_effects


def reply(core, status=200, content=b"hello", headers=None, more=False, local=None):
    core.handle_reply(local or core.reply_local, {"status": status, "headers": headers or [[b"Content-Type", b"text/plain"]],
                                                  "content": content, "more_content": more})


def test_get_becomes_one_http_request_message():
    core, _ = http_core()
    core.receive_data(request("GET", "/caf%C3%A9/x?q=1&r=%20", [("X-Thing", "a"), ("X_Spoof", "b"), ("x-thing", "c")]))
    (send,) = sends_of(core)
    assert send.channel == "http.request" and send.on_full is OnFull.REFUSE
    msg = send.message
    assert msg["reply_channel"] == PREFIX + ".1"
    assert msg["reply_channel"].partition("!")[2] == "7.1"
    assert msg["http_version"] == "1.1"
    assert msg["method"] == "GET"
    assert msg["path"] == "/café/x"
    assert msg["query_string"] == b"q=1&r=%20"
    assert msg["scheme"] == "http" and msg["root_path"] == ""
    assert msg["headers"] == [[b"host", b"example.com"], [b"x-thing", b"a"], [b"x-thing", b"c"]]
    assert msg["body"] == b"" and msg["body_channel"] is None
    assert msg["client"] == ["127.0.0.1", 5555] and msg["server"] == ["127.0.0.1", 8000]
    assert core.state is HTTPState.WAITING
    assert core.pop_data() == b""  # nothing written before the application answers


def test_response_is_written_with_content_length_and_keep_alive():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    reply(core, headers=[[b"Set-Cookie", b"a=1"], [b"Set-Cookie", b"b=2"]])
    data = core.pop_data()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"Set-Cookie: ") == 2  # never joined, case kept
    ((status, headers, body),) = parse_responses(data)
    assert (status, body, headers[b"content-length"]) == (200, b"hello", b"5")
    assert core.state is HTTPState.IDLE and not core.closed
    (record,) = split_effects(core.pop_effects())[1]
    assert (record.request, record.status, record.length) == ("GET /", 200, 5)


def test_streaming_response_uses_chunks_until_more_content_false():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    reply(core, content=b"part1", more=True)
    assert core.state is HTTPState.RESPONDING
    core.handle_reply(core.reply_local, {"content": b"part2", "more_content": True})
    core.handle_reply(core.reply_local, {"content": b"", "more_content": False})
    data = core.pop_data()
    assert b"transfer-encoding: chunked" in data.lower()
    assert parse_responses(data)[0][2] == b"part1part2"
    assert core.state is HTTPState.IDLE


def test_keep_alive_gives_each_request_its_own_reply_channel_and_drops_stale_replies():
    core, _ = http_core()
    core.receive_data(request(target="/a"))
    first = sends_of(core)[0].message["reply_channel"]
    reply(core, content=b"A")
    core.receive_data(request(target="/b"))
    second = sends_of(core)[0].message["reply_channel"]
    assert first != second and second.endswith(".2")
    reply(core, content=b"stale", local=first.partition("!")[2])  # ignored
    reply(core, content=b"B")
    assert [r[2] for r in parse_responses(core.pop_data())] == [b"A", b"B"]


def test_pipelined_requests_are_dispatched_and_answered_in_order():
    core, _ = http_core()
    core.receive_data(request(target="/1") + request(target="/2") + request(target="/3"))
    (send,) = sends_of(core)
    assert send.message["path"] == "/1"
    for expected in ("/2", "/3"):
        reply(core, content=b"r")
        (send,) = sends_of(core)
        assert send.message["path"] == expected
    reply(core, content=b"last")
    bodies = [r[2] for r in parse_responses(core.pop_data())]
    assert bodies == [b"r", b"r", b"last"]


def test_reading_pauses_when_pipelined_data_piles_up():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    assert core.wants_read
    core.receive_data(request(target="/" + "x" * 4000) * 20)
    assert not core.wants_read
    reply(core)
    assert core.wants_read


@pytest.mark.parametrize("raw, body", [
    (request("POST", body=b"x=1&y=2"), b"x=1&y=2"),
    (request("POST", headers=[("Transfer-Encoding", "chunked")]) + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
    (request("POST", headers=[("Content-Length", "0")]), b""),
])
def test_request_bodies_content_length_and_chunked(raw, body):
    core, _ = http_core()
    for i in range(len(raw)):  # one byte at a time: framing must not depend on read sizes
        core.receive_data(raw[i:i + 1])
    (send,) = sends_of(core)
    assert send.message["body"] == body and send.message["body_channel"] is None


def test_expect_100_continue_is_answered_before_the_body():
    core, _ = http_core()
    core.receive_data(request("POST", headers=[("Content-Length", "3"), ("Expect", "100-continue")]))
    assert core.pop_data() == b"HTTP/1.1 100 \r\n\r\n"
    assert sends_of(core) == []
    core.receive_data(b"abc")
    assert sends_of(core)[0].message["body"] == b"abc"


def test_head_response_has_length_but_no_body():
    core, _ = http_core()
    core.receive_data(request("HEAD"))
    sends_of(core)
    reply(core, content=b"twelve bytes")
    data = core.pop_data()
    assert b"content-length: 12" in data.lower() and not data.endswith(b"twelve bytes")
    ((status, _, body),) = parse_responses(data, [b"HEAD"])
    assert (status, body) == (200, b"")


def test_large_upload_streams_through_body_channel_in_chunks():
    core, _ = http_core()
    payload = bytes(range(256)) * (2 * 1024 * 1024 // 256 + 7)  # a bit over 2 MiB
    core.receive_data(request("POST", headers=[("Content-Length", str(len(payload)))]))
    sends = []
    for offset in range(0, len(payload), 65536):
        core.receive_data(payload[offset:offset + 65536])
        sends += sends_of(core)
        # never more than one chunk held in the core
        assert len(core._body) <= BODY_CHUNK_SIZE
    first, chunks = sends[0], sends[1:]
    assert first.channel == "http.request"
    body_channel = first.message["body_channel"]
    assert body_channel.startswith("http.request.body?") and len(first.message["body"]) == BODY_CHUNK_SIZE
    assert all(s.channel == body_channel and s.on_full is OnFull.RETRY for s in chunks)
    assert [s.message["more_content"] for s in chunks] == [True] * (len(chunks) - 1) + [False]
    assert first.message["body"] + b"".join(s.message["content"] for s in chunks) == payload
    assert core.state is HTTPState.WAITING


@pytest.mark.parametrize("refusal, status", [(Refusal.FULL, 503), (Refusal.TOO_LARGE, 500), (Refusal.FAILED, 500)])
def test_refused_body_chunk_answers_and_tells_the_application(refusal, status):
    core, _ = http_core()
    core.receive_data(request("POST", headers=[("Content-Length", str(3 * BODY_CHUNK_SIZE))]))
    core.receive_data(b"x" * (2 * BODY_CHUNK_SIZE + 10))
    first, chunk = sends_of(core)
    assert chunk.channel == first.message["body_channel"]
    core.send_refused(chunk, refusal)
    assert parse_responses(core.pop_data())[0][0] == status
    assert [s.channel for s in sends_of(core) if s.channel == "http.disconnect"] == ["http.disconnect"]
    assert core.closed


@pytest.mark.parametrize("whole", [False, True], ids=["mid-upload", "after-the-upload"])
def test_answering_forgets_body_chunks_still_waiting(whole):
    core, _ = http_core()
    size = 3 * BODY_CHUNK_SIZE
    core.receive_data(request("POST", headers=[("Content-Length", str(size))]))
    core.receive_data(b"x" * (size if whole else 2 * BODY_CHUNK_SIZE + 10))
    first, *_ = sends_of(core)
    body_channel = first.message["body_channel"]
    core.handle_reply(core.reply_local, {"status": 200, "content": b"ok"})
    effects = core.pop_effects()
    assert effects[0] == CancelSends(body_channel)
    closed = [e for e in effects if isinstance(e, LayerSend) and e.channel == body_channel]
    # Mid-upload the application is also told the body ends here; after it, it was told already.
    assert [(s.message["closed"], s.on_full) for s in closed] == ([] if whole else [(True, OnFull.DROP)])


def test_client_leaving_mid_upload_closes_body_channel_and_sends_disconnect():
    core, _ = http_core()
    core.receive_data(request("POST", headers=[("Content-Length", str(3 * BODY_CHUNK_SIZE))]))
    core.receive_data(b"x" * (BODY_CHUNK_SIZE + 10))
    body_channel = sends_of(core)[0].message["body_channel"]
    core.receive_data(b"")
    sends = sends_of(core)
    assert [(s.channel, s.on_full) for s in sends] == [(body_channel, OnFull.DROP), ("http.disconnect", OnFull.DROP)]
    assert sends[0].message["closed"] is True
    assert sends[1].message == {"reply_channel": PREFIX + ".1", "path": "/"}
    assert core.closed


@pytest.mark.parametrize("state_setup", ["waiting", "responding"])
def test_http_disconnect_when_client_leaves_before_response_ends(state_setup):
    core, _ = http_core()
    core.receive_data(request(target="/poll"))
    sends_of(core)
    if state_setup == "responding":
        reply(core, more=True)
    core.receive_data(b"")
    (send,) = sends_of(core)
    assert send.channel == "http.disconnect" and send.message["path"] == "/poll"
    assert core.closed


def test_no_disconnect_after_response_finished():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    reply(core)
    core.pop_effects()
    core.receive_data(b"")
    assert sends_of(core) == [] and core.closed


@pytest.mark.parametrize("raw, status, options", [
    (b"GARBAGE\r\n\r\n", 400, {}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, {}),
    (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400, {}),
    (b"GET /%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400, {}),  # not UTF-8 after decoding
    (request(target="/" + "a" * 200), 400, {"limit_request_line": 100}),
    (request(headers=[("X-Big", "v" * 300)]), 431, {"limit_request_field_size": 100}),
    (request(headers=[(f"X-{i}", "v") for i in range(20)]), 431, {"limit_request_fields": 10}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"v" * 200_000, 431, {}),
    (request("POST", body=b"x" * 50), 413, {"max_body_size": 10}),
    (request("POST", headers=[("Transfer-Encoding", "chunked")]) + b"20\r\n" + b"x" * 32 + b"\r\n", 413,
     {"max_body_size": 10}),
])
def test_malformed_and_oversized_requests_get_an_error_status_and_close(raw, status, options):
    core, _ = http_core(**options)
    core.receive_data(raw)
    ((got, headers, _),) = parse_responses(core.pop_data())
    assert got == status and headers[b"connection"] == b"close"
    assert core.closed
    assert not [s for s in sends_of(core) if s.channel == "http.request"]


@pytest.mark.parametrize("refusal, body, status", [
    (Refusal.FULL, b"", 503),
    (Refusal.TOO_LARGE, b"", 431),  # only the headers can have made it too large
    (Refusal.TOO_LARGE, b"x" * 1000, 413),  # the message carries the body too
    (Refusal.FAILED, b"", 500),
])
def test_refused_http_request_answers_without_disconnect(refusal, body, status):
    core, _ = http_core()
    core.receive_data(request("POST" if body else "GET", body=body))
    (send,) = sends_of(core)
    core.send_refused(send, refusal)
    assert parse_responses(core.pop_data())[0][0] == status
    assert core.closed and sends_of(core) == []


def test_header_timeout_answers_408_to_a_slow_head():
    core, clock = http_core(header_timeout=2)
    core.receive_data(b"GET / HTTP/1.1\r\nHost")
    clock.advance(1.9)
    core.tick()
    assert not core.closed
    core.receive_data(b": x\r\n")  # dribbling does not extend the deadline
    clock.advance(0.2)
    core.tick()
    assert parse_responses(core.pop_data())[0][0] == 408 and core.closed


def test_http_timeout_answers_503_and_notifies_the_application():
    core, clock = http_core(http_timeout=3)
    core.receive_data(request())
    sends_of(core)
    assert core.deadline == clock() + 3
    clock.advance(3)
    core.tick()
    assert parse_responses(core.pop_data())[0][0] == 503
    assert [s.channel for s in sends_of(core)] == ["http.disconnect"]
    assert core.closed


def test_idle_limit_applies_once_the_response_started():
    core, clock = http_core(http_timeout=3, http_idle_timeout=10)
    core.receive_data(request())
    sends_of(core)
    reply(core, more=True)
    clock.advance(5)
    core.tick()
    assert not core.closed  # http_timeout no longer applies
    clock.advance(5)
    core.tick()
    assert core.closed and [s.channel for s in sends_of(core)] == ["http.disconnect"]


def test_keepalive_timeout_closes_an_idle_connection_quietly():
    core, clock = http_core(keepalive=5)
    core.receive_data(request())
    sends_of(core)
    reply(core)
    core.pop_data()
    clock.advance(5)
    core.tick()
    assert core.closed and core.pop_data() == b""


def test_http_10_closes_after_the_response():
    core, _ = http_core()
    core.receive_data(request(version="1.0"))
    assert sends_of(core)[0].message["http_version"] == "1.0"
    reply(core)
    assert parse_responses(core.pop_data())[0][2] == b"hello"
    assert core.closed


def test_connection_close_from_client_is_honoured():
    core, _ = http_core()
    core.receive_data(request(headers=[("Connection", "close")]))
    sends_of(core)
    reply(core)
    assert core.closed


@pytest.mark.parametrize("first, second, expect_status", [
    ({"content": b"no status"}, None, 500),
    ({"status": "200"}, None, 500),
    ({"status": 200, "headers": [[b"bad\nname", b"v"]]}, None, 500),
])
def test_bad_first_reply_is_answered_500(first, second, expect_status):
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    core.handle_reply(core.reply_local, first)
    assert parse_responses(core.pop_data())[0][0] == expect_status and core.closed


def test_second_status_mid_response_aborts():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    reply(core, more=True)
    core.handle_reply(core.reply_local, {"status": 200})
    assert core.closed and [s.channel for s in sends_of(core)] == ["http.disconnect"]


def test_websocket_upgrade_is_handed_over_with_trailing_bytes():
    core, _ = http_core()
    raw = request(headers=[("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
                           ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")])
    core.receive_data(raw + b"\x81\x80early")
    sends, _, upgrades = split_effects(core.pop_effects())
    assert sends == []
    (upgrade,) = upgrades
    assert isinstance(upgrade, Upgrade) and upgrade.trailing == b"\x81\x80early"
    assert upgrade.request.target == b"/"
    assert core.state is HTTPState.SWITCHED and not core.wants_read


def test_graceful_shutdown_finishes_the_request_then_closes():
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    core.shutdown()
    assert not core.closed and core.busy
    reply(core)
    data = core.pop_data()
    assert b"connection: close" in data.lower() and core.closed

    idle, _ = http_core()
    idle.shutdown()
    assert idle.closed


def test_abort_answers_503_to_a_waiting_request_and_takes_the_websocket_close_code():
    # One signature for both cores: the transport calls abort(code) without asking which.
    core, _ = http_core()
    core.receive_data(request())
    sends_of(core)
    core.abort(1012)
    ((status, _, body),) = parse_responses(core.pop_data())
    assert (status, body) == (503, b"Service Unavailable\n") and core.closed
    (disconnect,) = sends_of(core)
    assert disconnect.channel == "http.disconnect"


def test_early_response_during_upload_closes_after_response():
    core, _ = http_core()
    core.receive_data(request("POST", headers=[("Content-Length", str(2 * BODY_CHUNK_SIZE))]))
    core.receive_data(b"x" * (BODY_CHUNK_SIZE + 1))
    sends_of(core)
    reply(core, status=413, content=b"too big")
    assert parse_responses(core.pop_data())[0][0] == 413
    assert core.closed


def test_illegal_transition_is_a_local_error():
    life = Lifecycle({(HTTPState.IDLE, "request"): HTTPState.RECEIVING}, HTTPState.IDLE)
    with pytest.raises(LocalProtocolError):
        life.fire("respond")
    assert life.fire("request") is HTTPState.RECEIVING


def test_slow_but_moving_upload_is_not_cut_but_a_stalled_one_is():
    core, clock = http_core(http_timeout=5, http_idle_timeout=2)
    core.receive_data(request("POST", headers=[("Content-Length", "100")]))
    for _ in range(9):  # 18 s in total, never 2 s without data
        clock.advance(1.9)
        core.tick()
        core.receive_data(b"x" * 10)
    assert not core.closed
    clock.advance(2)
    core.tick()
    assert parse_responses(core.pop_data(), [b"POST"])[0][0] == 408
