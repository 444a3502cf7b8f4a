"""The WebSocket fast path (interface/_frames.py and its use in interface/_ws.py).

Common frames are parsed and built by the core itself, every other frame by wsproto.
These tests drive the core with wsproto's own client (with and without
permessage-deflate) and check that whatever mix of frames arrives, cut wherever the
socket cuts it, the application sees exactly the messages that were sent, in order,
and the client decodes exactly what the application answered; and that every error
the fast path can meet ends the connection as wsproto would (1007, 1009, 1002)."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import XorMaskerSimple

from interface._frames import FAST_MAX, check_wsproto, encode_frame, parse_head, unmask
from interface._options import Options
from interface._ws import WebSocketConnection, WSState

from .helpers import FakeClock, info, sends_of


def pair(deflate: bool, **options: Any) -> tuple[WebSocketConnection, WSConnection]:
    """An open core and the wsproto client talking to it."""
    client = WSConnection(ConnectionType.CLIENT)
    handshake = client.send(Request(host="example.com", target="/fast",
                                    extensions=[PerMessageDeflate()] if deflate else []))
    server = h11.Connection(h11.SERVER)
    server.receive_data(handshake)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    core = WebSocketConnection(info(), Options(**options), request, clock=FakeClock())
    core.pop_effects()
    core.handle_reply("7", {"accept": True})
    client.receive_data(core.pop_data())
    (accepted,) = list(client.events())
    assert isinstance(accepted, AcceptConnection)
    assert bool(accepted.extensions) is deflate
    core.pop_effects()
    return core, client


def received(core: WebSocketConnection) -> list[str | bytes]:
    """The data of the websocket.receive messages the core queued (order checked).

    A websocket.disconnect among them is kept in ``core.test_disconnects``.
    """
    out = []
    for send in sends_of(core):
        if send.channel == "websocket.disconnect":
            core.test_disconnects = [*getattr(core, "test_disconnects", []), send.message]  # type: ignore[attr-defined]
        if send.channel == "websocket.receive":
            message = send.message
            out.append((message["order"], message["text"] if message.get("text") is not None else message["bytes"]))
    orders = [order for order, _ in out]
    assert orders == sorted(orders)
    return [data for _, data in out]


def client_events(client: WSConnection, data: bytes) -> list[Any]:
    client.receive_data(data)
    return list(client.events())


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# One client action: a whole message, a message in fragments, or a ping.
message_data = st.one_of(
    st.text(max_size=40), st.binary(max_size=40),
    st.sampled_from([b"\x00" * (FAST_MAX + 10), "é" * 70000, b"x" * 126, "y" * 65535]),
)
actions = st.lists(st.one_of(
    st.tuples(st.just("message"), message_data),
    st.tuples(st.just("fragments"), st.lists(st.text(max_size=10), min_size=1, max_size=4)),
    st.tuples(st.just("ping"), st.binary(max_size=10)),
), max_size=8)


@settings(max_examples=60, deadline=None)
@given(deflate=st.booleans(), script=actions, points=st.lists(st.integers(min_value=0), max_size=6))
def test_any_mix_of_frames_cut_anywhere_arrives_whole_and_in_order(deflate, script, points):
    core, client = pair(deflate)
    wire = b""
    expected: list[str | bytes] = []
    pings = []
    for kind, value in script:
        if kind == "message":
            event = TextMessage(data=value) if isinstance(value, str) else BytesMessage(data=value)
            wire += client.send(event)
            expected.append(value)
        elif kind == "fragments":
            for i, part in enumerate(value):
                wire += client.send(TextMessage(data=part, message_finished=i == len(value) - 1))
            expected.append("".join(value))
        else:
            wire += client.send(Ping(payload=value))
            pings.append(value)
    got: list[str | bytes] = []
    for piece in cut(wire, points):
        core.receive_data(piece)
        got += received(core)
    assert got == expected
    assert core.state is WSState.OPEN
    pongs = [e.payload for e in client_events(client, core.pop_data()) if isinstance(e, Pong)]
    assert pongs == pings


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("data", ["", "echo", "é" * 40000, b"", b"\x00\xff" * 10, os.urandom(70000), "z" * 200000])
def test_replies_decode_at_the_client(deflate, data):
    core, client = pair(deflate)
    for _ in range(3):  # the compression context carries over between messages
        core.handle_reply("7", {"text": data} if isinstance(data, str) else {"bytes": data})
        events = client_events(client, core.pop_data())
        assert [e.data for e in events] == [data]


@pytest.mark.parametrize("deflate", [False, True])
def test_fast_and_wsproto_paths_share_the_compression_context(deflate):
    core, client = pair(deflate)
    wire = client.send(TextMessage(data="hello " * 10))  # fast
    wire += client.send(TextMessage(data="hello ", message_finished=False))  # wsproto
    wire += client.send(TextMessage(data="hello " * 5, message_finished=True))
    wire += client.send(TextMessage(data="hello " * 10))  # fast again, same context
    core.receive_data(wire)
    assert received(core) == ["hello " * 10, "hello " * 6, "hello " * 10]


def closed_with(core: WebSocketConnection, client: WSConnection) -> tuple[int, int]:
    """(close code the client got, code of the websocket.disconnect the app got)."""
    received(core)
    (disconnect,) = core.test_disconnects  # type: ignore[attr-defined]
    closes = [e.code for e in client_events(client, core.pop_data()) if isinstance(e, CloseConnection)]
    assert len(closes) == 1
    return int(closes[0]), disconnect["code"]


def masked_frame(first: int, payload: bytes, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    assert len(payload) < 126
    return bytes((first, 0x80 | len(payload))) + key + bytes(XorMaskerSimple(key).process(bytearray(payload)))


def test_invalid_utf8_in_a_fast_frame_closes_1007():
    core, client = pair(False)
    core.receive_data(client.send(TextMessage(data="ok")) + masked_frame(0x81, b"\xff\xfe") + client.send(TextMessage(data="late")))
    assert received(core) == ["ok"]
    assert closed_with(core, client) == (1007, 1007) and core.closed


def test_corrupt_compressed_data_closes_1007():
    core, client = pair(True)
    core.receive_data(masked_frame(0xC1, b"\xff\xff\xff\xff\x00"))
    assert closed_with(core, client) == (1007, 1007)


def test_compressed_frame_without_deflate_negotiated_closes_1002():
    core, client = pair(False)
    core.receive_data(masked_frame(0xC1, b"abc"))
    assert closed_with(core, client) == (1002, 1002)


def test_unmasked_and_non_minimal_frames_go_to_wsproto_and_close_1002():
    core, client = pair(False)
    core.receive_data(b"\x81\x02hi")  # unmasked
    assert closed_with(core, client) == (1002, 1002)
    core, client = pair(False)
    core.receive_data(b"\x81\xfe\x00\x02" + b"\x00\x00\x00\x00" + b"hi")  # 16-bit length for 2 bytes
    assert closed_with(core, client) == (1002, 1002)


def test_message_over_the_limit_in_a_fast_frame_closes_1009():
    core, client = pair(True, websocket_max_message_size=100)
    core.receive_data(client.send(TextMessage(data="a" * 100)) + client.send(TextMessage(data="a" * 101)))
    assert received(core) == ["a" * 100]
    assert closed_with(core, client) == (1009, 1009)
    assert core.state is WSState.CLOSING  # waiting for the peer's close frame


@pytest.mark.parametrize("text, finished", [
    pytest.param(False, True, id="whole-bytes-frame"),  # the fast path inflates a whole frame
    pytest.param(True, True, id="whole-text-frame"),
    pytest.param(False, False, id="first-bytes-fragment"),  # wsproto's hooks inflate a fragment
    pytest.param(True, False, id="first-text-fragment"),
])
def test_a_compressed_bomb_is_never_inflated_far_past_the_limit(text, finished):
    # 8 MiB of zeros deflate to a frame of about 8 KiB: a bomb neither path may unpack.
    core, client = pair(True, websocket_max_message_size=1000)
    data = "\0" * (8 << 20) if text else bytes(8 << 20)
    message = TextMessage if text else BytesMessage
    bomb = client.send(message(data=data, message_finished=finished))
    assert len(bomb) < FAST_MAX  # small enough for the fast path: only FIN decides the path
    tracemalloc.start()
    try:
        core.receive_data(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert closed_with(core, client) == (1009, 1009)
    assert peak < 1 << 20


def test_a_ping_between_compressed_fragments_leaves_the_message_intact():
    # RFC 6455 §5.4: control frames may come between the fragments of a message.
    core, client = pair(True)
    wire = client.send(TextMessage(data="hello " * 20, message_finished=False)) + client.send(Ping(b"p"))
    wire += client.send(TextMessage(data="world " * 20, message_finished=True))
    wire += client.send(TextMessage(data="next"))  # fast path, same context
    core.receive_data(wire)
    assert received(core) == ["hello " * 20 + "world " * 20, "next"]
    assert not getattr(core, "test_disconnects", [])
    assert [e.payload for e in client_events(client, core.pop_data()) if isinstance(e, Pong)] == [b"p"]


@pytest.mark.parametrize("split", [None, 4, len], ids=["fast-path", "wsproto-path", "ends-in-first-fragment"])
def test_a_message_ending_the_deflate_stream_leaves_the_next_one_readable(split):
    # A client may end a message with a final deflate block (BFINAL=1) instead of an empty
    # stored block; its next message is then a new deflate stream. The stream may end in
    # a fragment before the message does (here: an empty last continuation follows).
    core, client = pair(True)
    finished = zlib.compressobj(wbits=-15)
    first = finished.compress(b"first message") + finished.flush(zlib.Z_FINISH)
    if split is None:
        wire = masked_frame(0xC1, first)
    else:
        at = split(first) if callable(split) else split
        wire = masked_frame(0x41, first[:at]) + masked_frame(0x80, first[at:])  # text start + last continuation
    fresh = zlib.compressobj(wbits=-15)
    second = fresh.compress(b"second") + fresh.flush(zlib.Z_SYNC_FLUSH)
    core.receive_data(wire + masked_frame(0xC1, second[:-4]))
    assert received(core) == ["first message", "second"]
    assert not getattr(core, "test_disconnects", [])


def test_a_changed_wsproto_deflate_fails_at_import_with_a_clear_error():
    check_wsproto()  # the installed wsproto has what Deflate uses

    class Renamed(PerMessageDeflate):
        def __init__(self) -> None:
            super().__init__()
            self._inflater = self.__dict__.pop("_decompressor")

    with pytest.raises(ImportError, match="PerMessageDeflate has no _decompressor"):
        check_wsproto(Renamed)


def test_frames_sent_before_the_accept_take_the_fast_path_after_it():
    client = WSConnection(ConnectionType.CLIENT)
    handshake = client.send(Request(host="example.com", target="/early"))
    server = h11.Connection(h11.SERVER)
    server.receive_data(handshake)
    request = server.next_event()
    # A client may not send frames before the 101, but a fast one might; they wait.
    early = masked_frame(0x81, b"one") + masked_frame(0x82, b"two")
    core = WebSocketConnection(info(), Options(), request, early[:5], clock=FakeClock())
    core.receive_data(early[5:])
    assert received(core) == []
    core.handle_reply("7", {"accept": True})
    assert received(core) == ["one", b"two"]


def test_nothing_is_read_after_the_peer_closed():
    core, client = pair(False)
    core.receive_data(client.send(CloseConnection(code=1000)) + masked_frame(0x81, b"after"))
    assert received(core) == []
    assert closed_with(core, client) == (1000, 1000)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_headers_match_rfc_6455(length):
    frame = encode_frame(0x2, b"\x07" * length)
    head = parse_head(frame, 0)
    assert head is not None and head.minimal and not head.masked
    assert head.first == 0x82 and head.length == length and len(frame) == head.size + length
    assert parse_head(frame[:head.size - 1], 0) is None


@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
def test_unmask_is_the_rfc_xor(data, key):
    assert unmask(data, key) == bytes(XorMaskerSimple(key).process(bytearray(data)))
