"""Byte-level tests of the sans-I/O WebSocket core (interface/_ws.py): every reply-table row,
ordering, close codes, keepalive, limits, backpressure. Frames are made and parsed with
wsproto's own client-side connection; no sockets."""

from __future__ import annotations

from typing import Any

import h11
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from interface._effects import LayerSend, OnFull, Refusal
from interface._options import Options
from interface._ws import WebSocketConnection, WSState

from .helpers import PREFIX, FakeClock, info, sends_of, split_effects

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(target: bytes = b"/chat/room?x=1", extra: list[tuple[bytes, bytes]] | None = None) -> h11.Request:
    headers = [(b"host", b"example.com"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
               (b"sec-websocket-key", KEY.encode()), (b"sec-websocket-version", b"13"),
               (b"origin", b"http://example.com")] + (extra or [])
    return h11.Request(method=b"GET", target=target, headers=headers)


def ws_core(trailing: bytes = b"", lifetime: float | None = None, extra=None, target=b"/chat/room?x=1",
            **options: Any) -> tuple[WebSocketConnection, FakeClock]:
    clock = FakeClock()
    core = WebSocketConnection(info(), Options(**options), upgrade_request(target, extra), trailing,
                               lifetime=lifetime, clock=clock)
    return core, clock


def opened(**kwargs: Any) -> tuple[WebSocketConnection, FakeClock, Connection]:
    core, clock = ws_core(**kwargs)
    sends_of(core)
    core.handle_reply("7", {"accept": True})
    assert core.pop_data().startswith(b"HTTP/1.1 101 ")
    core.pop_effects()
    return core, clock, Connection(ConnectionType.CLIENT)


def frames(client: Connection, data: bytes) -> list[Any]:
    client.receive_data(data)
    return list(client.events())


def test_connect_message_has_every_key_and_order_zero():
    core, _ = ws_core(extra=[(b"x_spoof", b"1"), (b"cookie", b"a=b")])
    sends, records, _ = split_effects(core.pop_effects())
    (send,) = sends
    assert send.channel == "websocket.connect" and send.on_full is OnFull.REFUSE
    msg = send.message
    assert msg["reply_channel"] == PREFIX and msg["order"] == 0
    assert msg["path"] == "/chat/room" and msg["query_string"] == b"x=1"
    assert msg["scheme"] == "ws" and msg["root_path"] == ""
    assert [b"cookie", b"a=b"] in msg["headers"] and not any(h[0] == b"x_spoof" for h in msg["headers"])
    assert msg["client"] == ["127.0.0.1", 5555] and msg["server"] == ["127.0.0.1", 8000]
    assert records[0].request == "WSCONNECTING /chat/room"
    assert core.pop_data() == b"" and core.state is WSState.HANDSHAKE  # held until the app answers


# The handshaking rows of the asgi1.md §8 reply table.
@pytest.mark.parametrize("reply, status, frames_after, close_code", [
    ({"accept": True}, 101, [], None),
    ({"accept": False}, 403, [], None),
    ({"accept": False, "text": "ignored"}, 403, [], None),
    ({"text": "implicit"}, 101, ["implicit"], None),
    ({"bytes": b"implicit"}, 101, [b"implicit"], None),
    ({"close": True}, 403, [], None),
    ({"close": 4001}, 403, [], None),
    ({"close": 4001, "text": "bye"}, 101, ["bye"], 4001),
    ({"accept": True, "text": "hi", "close": True}, 101, ["hi"], 1000),
])
def test_handshake_reply_table(reply, status, frames_after, close_code):
    core, _ = ws_core()
    sends_of(core)
    core.handle_reply("7", reply)
    data = core.pop_data()
    assert data.startswith(b"HTTP/1.1 %d " % status)
    if status != 101:
        assert core.closed
        return
    events = frames(Connection(ConnectionType.CLIENT), data.split(b"\r\n\r\n", 1)[1])
    assert [e.data for e in events if isinstance(e, (TextMessage, BytesMessage))] == frames_after
    closes = [e.code for e in events if isinstance(e, CloseConnection)]
    assert closes == ([close_code] if close_code else [])


@pytest.mark.parametrize("reply", [{}, {"text": ""}, {"text": "a", "bytes": b"b"}, {"accept": True, "nonsense": 1}])
def test_replies_that_do_nothing_during_the_handshake(reply):
    core, _ = ws_core()
    sends_of(core)
    core.handle_reply("7", reply)
    assert core.pop_data() == b"" and core.state is WSState.HANDSHAKE


def test_subprotocol_is_the_first_client_offer_the_server_supports():
    core, _ = ws_core(extra=[(b"sec-websocket-protocol", b"v1.chat, v2.chat")], ws_protocols=("v2.chat", "v1.chat"))
    core.handle_reply("7", {"accept": True})
    assert b"Sec-WebSocket-Protocol: v1.chat\r\n" in core.pop_data()
    core, _ = ws_core(extra=[(b"sec-websocket-protocol", b"other")], ws_protocols=("v1.chat",))
    core.handle_reply("7", {"accept": True})
    assert b"Sec-WebSocket-Protocol" not in core.pop_data()


def test_permessage_deflate_is_negotiated_when_offered():
    core, _ = ws_core(extra=[(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")])
    core.handle_reply("7", {"accept": True})
    assert b"permessage-deflate" in core.pop_data()


def test_messages_flow_with_order_and_empty_ones_are_kept():
    core, _, client = opened()
    data = b"".join(client.send(e) for e in [TextMessage(data="héllo"), BytesMessage(data=b"\x00\x01"),
                                            TextMessage(data=""), BytesMessage(data=b"")])
    core.receive_data(data)
    sends = sends_of(core)
    assert all(s.channel == "websocket.receive" and s.on_full is OnFull.RETRY for s in sends)
    got = [(s.message["order"], s.message["text"], s.message["bytes"]) for s in sends]
    assert got == [(1, "héllo", None), (2, None, b"\x00\x01"), (3, "", None), (4, None, b"")]
    assert all(s.message["path"] == "/chat/room" and s.message["reply_channel"] == PREFIX for s in sends)
    for reply in ({"text": ""}, {"bytes": b""}, {"text": "x"}):
        core.handle_reply("7", reply)
    events = frames(client, core.pop_data())
    assert [e.data for e in events] == ["", b"", "x"]


def test_fragmented_messages_are_assembled():
    core, _, client = opened()
    data = client.send(TextMessage(data="frag", message_finished=False))
    data += client.send(Ping(payload=b"p"))  # control frames may interleave
    data += client.send(TextMessage(data="ment", message_finished=True))
    core.receive_data(data)
    (send,) = sends_of(core)
    assert send.message["text"] == "fragment"
    assert any(isinstance(e, Pong) for e in frames(client, core.pop_data()))


def test_frames_sent_before_acceptance_are_held_then_forwarded():
    client = Connection(ConnectionType.CLIENT)
    early = client.send(TextMessage(data="early"))
    core, _ = ws_core(trailing=early[:3])
    core.receive_data(early[3:])
    assert [s.channel for s in sends_of(core)] == ["websocket.connect"]
    core.handle_reply("7", {"accept": True})
    (send,) = sends_of(core)
    assert send.message["text"] == "early" and send.message["order"] == 1


@pytest.mark.parametrize("peer_code, expected", [(1000, 1000), (4000, 4000), (None, 1005)])
def test_peer_close_is_answered_and_reported(peer_code, expected):
    core, _, client = opened()
    core.receive_data(client.send(TextMessage(data="a")))
    # A close frame without a status code is made by hand (wsproto's client always adds one).
    core.receive_data(client.send(CloseConnection(code=peer_code)) if peer_code else b"\x88\x80\x00\x00\x00\x00")
    sends = sends_of(core)
    assert sends[-1].channel == "websocket.disconnect"
    assert sends[-1].message == {"reply_channel": PREFIX, "path": "/chat/room", "code": expected, "order": 2}
    (echo,) = [e for e in frames(client, core.pop_data()) if isinstance(e, CloseConnection)]
    assert echo.code == expected
    assert core.closed


def test_application_close_with_code_then_peer_answer():
    core, _, client = opened()
    core.handle_reply("7", {"text": "last", "close": 4123})
    events = frames(client, core.pop_data())
    assert [type(e) for e in events] == [TextMessage, CloseConnection] and events[1].code == 4123
    (send,) = sends_of(core)
    assert send.message["code"] == 4123 and send.message["order"] == 1
    assert core.state is WSState.CLOSING
    core.receive_data(client.send(events[1].response()))
    assert core.closed and sends_of(core) == []  # exactly one disconnect


def test_abnormal_drop_reports_1006():
    core, _, client = opened()
    core.receive_data(b"")
    (send,) = sends_of(core)
    assert send.message["code"] == 1006 and core.closed


def test_drop_during_handshake_still_sends_disconnect():
    core, _ = ws_core()
    sends_of(core)
    core.connection_lost()
    (send,) = sends_of(core)
    assert send.channel == "websocket.disconnect" and send.message["order"] == 1


@pytest.mark.parametrize("raw, code", [
    (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),  # text frame with invalid UTF-8
    (b"\x83\x80\x00\x00\x00\x00", 1002),  # reserved opcode 3
    (b"\x81\x05hello", 1002),  # unmasked client frame
])
def test_invalid_frames_close_with_1002_or_1007(raw, code):
    core, _, client = opened()
    core.receive_data(raw)
    events = frames(client, core.pop_data())
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [code]
    assert [s.message.get("code") for s in sends_of(core)] == [code]
    assert core.closed


def test_protocol_error_after_our_close_logs_one_disconnect():
    core, _, _ = opened()
    core.handle_reply("7", {"close": 4000})
    core.receive_data(b"\x83\x80\x00\x00\x00\x00")  # reserved opcode while we wait for the close
    sends, records, _ = split_effects(core.pop_effects())
    assert [r.request.split()[0] for r in records] == ["WSDISCONNECT"]
    assert [s.message["code"] for s in sends] == [4000]
    assert core.closed


def test_message_over_the_size_limit_closes_1009():
    core, _, client = opened(websocket_max_message_size=100)
    core.receive_data(client.send(BytesMessage(data=b"x" * 100)))
    assert len(sends_of(core)) == 1
    core.receive_data(client.send(TextMessage(data="y" * 60, message_finished=False)))
    core.receive_data(client.send(TextMessage(data="y" * 60, message_finished=True)))
    events = frames(client, core.pop_data())
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [1009]
    assert [s.message["code"] for s in sends_of(core)] == [1009]


def test_ping_after_idle_interval_and_drop_without_answer():
    core, clock, client = opened(ping_interval=20, ping_timeout=30)
    assert core.deadline == clock() + 20
    clock.advance(20)
    core.tick()
    assert any(isinstance(e, Ping) for e in frames(client, core.pop_data()))
    clock.advance(29)
    core.tick()
    assert not core.closed
    clock.advance(1)
    core.tick()
    assert core.closed and sends_of(core)[0].message["code"] == 1006


def test_pong_keeps_the_connection():
    core, clock, client = opened(ping_interval=20, ping_timeout=30)
    clock.advance(20)
    core.tick()
    ping = [e for e in frames(client, core.pop_data()) if isinstance(e, Ping)][0]
    clock.advance(10)
    core.receive_data(client.send(ping.response()))
    clock.advance(25)
    core.tick()
    assert not core.closed


def test_connect_timeout_rejects_with_403():
    core, clock = ws_core(websocket_connect_timeout=5)
    sends_of(core)
    clock.advance(5)
    core.tick()
    assert core.pop_data().startswith(b"HTTP/1.1 403 ")
    assert core.closed and [s.channel for s in sends_of(core)] == ["websocket.disconnect"]


def test_lifetime_closes_with_1000():
    core, clock, client = opened(lifetime=50, ping_interval=1000, ping_timeout=1000)
    clock.advance(50)
    core.tick()
    events = frames(client, core.pop_data())
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [1000]
    assert sends_of(core)[0].message["code"] == 1000


@pytest.mark.parametrize("refusal, status", [(Refusal.FULL, 503), (Refusal.TOO_LARGE, 431), (Refusal.FAILED, 500)])
def test_refused_connect_rejects_without_disconnect(refusal, status):
    core, _ = ws_core()
    (send,) = sends_of(core)
    core.send_refused(send, refusal)
    assert core.pop_data().startswith(b"HTTP/1.1 %d " % status)
    assert core.closed and sends_of(core) == []


def test_channel_full_on_receive_closes_1013_and_mutes():
    core, _, client = opened()
    core.receive_data(client.send(TextMessage(data="a")))
    (send,) = sends_of(core)
    core.send_refused(send)
    events = frames(client, core.pop_data())
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [1013]
    other = Connection(ConnectionType.CLIENT)  # frames the peer may still send before it reads our close
    core.receive_data(other.send(TextMessage(data="b")) + other.send(CloseConnection(code=1000)))
    assert sends_of(core) == []  # muted: neither receives nor disconnect


@pytest.mark.parametrize("refusal, code", [(Refusal.TOO_LARGE, 1009), (Refusal.FAILED, 1011)])
def test_receive_refused_but_not_full_closes_and_notifies(refusal, code):
    core, _, client = opened()
    core.receive_data(client.send(TextMessage(data="a")))
    (send,) = sends_of(core)
    core.send_refused(send, refusal)
    assert [e.code for e in frames(client, core.pop_data()) if isinstance(e, CloseConnection)] == [code]
    (disconnect,) = sends_of(core)
    assert disconnect.channel == "websocket.disconnect" and disconnect.message["code"] == code


@pytest.mark.parametrize("stop", ["shutdown", "abort"])
@pytest.mark.parametrize("code", [1001, 1012])
def test_shutdown_and_layer_loss_close_with_code_and_notify(code, stop):
    core, _, client = opened()
    getattr(core, stop)(code)
    assert [e.code for e in frames(client, core.pop_data()) if isinstance(e, CloseConnection)] == [code]
    (send,) = sends_of(core)
    assert send.message["code"] == code


def test_shutdown_during_handshake_rejects_503():
    core, _ = ws_core()
    sends_of(core)
    core.shutdown(1001)
    assert core.pop_data().startswith(b"HTTP/1.1 503 ")


# Replies once open. The core takes a lone {"text": str} or {"bytes": bytes} without the
# full check: every other reply, one-key ones of another type included, goes through it.
@pytest.mark.parametrize("reply, sent", [
    ({"text": "é"}, ["é"]),
    ({"bytes": b"\x00"}, [b"\x00"]),
    ({"bytes": bytearray(b"ba")}, [b"ba"]),
    ({"text": "a", "bytes": None}, ["a"]),
    ({"text": b"not str"}, []),
    ({"bytes": "not bytes"}, []),
    ({"text": None}, []),
    ({"accept": True}, []),
])
def test_open_replies_send_their_data_or_nothing(reply, sent):
    core, _, client = opened()
    core.handle_reply("7", reply)
    assert [e.data for e in frames(client, core.pop_data())] == sent
    assert core.state is WSState.OPEN


@pytest.mark.parametrize("closing", ["peer-gone", "our-close"])
def test_replies_after_close_are_dropped(closing):
    core, _, client = opened()
    if closing == "peer-gone":
        core.receive_data(b"")
    else:
        core.handle_reply("7", {"close": 4000})
        core.pop_data()
    sends_of(core)
    core.handle_reply("7", {"text": "late"})
    assert core.pop_data() == b""


def test_bad_handshake_is_rejected_without_connect():
    core = WebSocketConnection(info(), Options(), h11.Request(
        method=b"GET", target=b"/", headers=[(b"host", b"x"), (b"upgrade", b"websocket"),
                                             (b"connection", b"upgrade"), (b"sec-websocket-version", b"13")]))
    assert core.pop_data().startswith(b"HTTP/1.1 400 ")
    assert core.closed and sends_of(core) == []


def test_wrong_version_gets_426():
    core = WebSocketConnection(info(), Options(), upgrade_request(extra=[]))
    assert core.state is WSState.HANDSHAKE
    req = h11.Request(method=b"GET", target=b"/", headers=[
        (b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"upgrade"),
        (b"sec-websocket-key", KEY.encode()), (b"sec-websocket-version", b"8")])
    core = WebSocketConnection(info(), Options(), req)
    assert core.pop_data().startswith(b"HTTP/1.1 426 ")


def test_layer_send_records_are_frozen():
    send = LayerSend("websocket.receive", {}, OnFull.RETRY)
    with pytest.raises(Exception):
        send.channel = "x"  # type: ignore[misc]
