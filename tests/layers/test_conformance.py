"""The one conformance suite every shmchannels layer passes, part 1: the API (asgi1.md §1–3).

Each test runs against every layer in ``conftest.LAYER_FACTORIES`` through the ``layer``
(default settings) or ``make_layer(**kwargs)`` fixtures. Part 2
(``test_conformance_delivery.py``) covers delivery, capacity, expiry, groups and asyncio
(§4); part 3 (``test_conformance_shared.py``) several handles and processes on one store.
Nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmlayer import contract
from tests.layers.helpers import drain

# ------------------------------------------------------------ basics (§1)


def test_send_then_receive(layer: Any) -> None:
    layer.send("sr.test", {"value": "blue"})
    assert layer.receive(["sr.test"]) == ("sr.test", {"value": "blue"})


def test_message_delivered_once(layer: Any) -> None:
    layer.send("once.test", {"n": 1})
    assert layer.receive(["once.test"])[0] == "once.test"
    assert layer.receive(["once.test"]) == (None, None)


def test_receive_on_empty_returns_none(layer: Any) -> None:
    assert layer.receive(["empty.test"]) == (None, None)
    assert layer.receive(["empty.test", "empty.other", "empty.proc!"]) == (None, None)


def test_receive_empty_list(layer: Any) -> None:
    assert layer.receive([]) == (None, None)
    assert layer.receive([], block=True) == (None, None)


def test_receive_with_repeated_names(layer: Any) -> None:
    layer.send("dup.test", {"n": 1})
    assert layer.receive(["dup.test", "dup.test"]) == ("dup.test", {"n": 1})
    assert layer.receive(["dup.test", "dup.test"]) == (None, None)


def test_threads_share_one_layer(layer: Any) -> None:
    # Worker threads share one layer object: every message reaches exactly one reader.
    senders, per_sender = 3, 30  # 90 < the default capacity of 100: no ChannelFull
    total = senders * per_sender
    got: list[tuple[int, int]] = []
    got_lock = threading.Lock()
    errors: list[BaseException] = []

    def send_all(sid: int) -> None:
        try:
            for n in range(per_sender):
                layer.send("shared.work", {"s": sid, "n": n})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def receive_some() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not errors:
            channel, message = layer.receive(["shared.work"], block=True)
            if channel is not None:
                if message.get("stop"):
                    return
                with got_lock:
                    got.append((message["s"], message["n"]))

    receivers = [threading.Thread(target=receive_some) for _ in range(3)]
    sending = [threading.Thread(target=send_all, args=(sid,)) for sid in range(senders)]
    threads = receivers + sending
    for thread in threads:
        thread.start()
    for thread in sending:
        thread.join(40)
    deadline = time.monotonic() + 30
    while len(got) < total and not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in receivers:
        layer.send("shared.work", {"stop": True})  # 90 + 3 stays under capacity
    for thread in receivers:
        thread.join(40)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert sorted(got) == sorted((sid, n) for sid in range(senders) for n in range(per_sender))
    assert layer.receive(["shared.work"]) == (None, None)


def test_receive_picks_the_channel_with_a_message(layer: Any) -> None:
    layer.send("pick.b", {"from": "b"})
    assert layer.receive(["pick.a", "pick.b", "pick.c"]) == ("pick.b", {"from": "b"})


def test_blocking_receive_returns_pending_message(layer: Any) -> None:
    layer.send("blk.test", {"n": 1})
    assert layer.receive(["blk.test"], block=True) == ("blk.test", {"n": 1})


def test_blocking_receive_gives_up(layer: Any) -> None:
    # block=True waits a bounded time (~1 s) and returns (None, None); never hangs.
    started = time.monotonic()
    assert layer.receive(["blk.none"], block=True) == (None, None)
    assert time.monotonic() - started < 30


def test_blocking_receive_wakes_on_send_from_thread(layer: Any) -> None:
    timer = threading.Timer(0.1, layer.send, args=("blk.wake", {"n": 7}))
    timer.start()
    try:
        result = (None, None)
        for _ in range(10):  # a layer may return (None, None) between its waits
            result = layer.receive(["blk.wake"], block=True)
            if result[0] is not None:
                break
        assert result == ("blk.wake", {"n": 7})
    finally:
        timer.join(5)


def test_receive_many_is_deprecated_alias(layer: Any) -> None:
    layer.send("many.test", {"n": 1})
    with pytest.warns(DeprecationWarning):
        assert layer.receive_many(["many.test"]) == ("many.test", {"n": 1})


def test_receive_rejects_a_single_string(layer: Any) -> None:
    with pytest.raises(TypeError):
        layer.receive("str.test")


def test_exception_classes_on_instance(layer: Any) -> None:
    assert issubclass(layer.ChannelFull, contract.ChannelFull)
    assert issubclass(layer.MessageTooLarge, contract.MessageTooLarge)
    assert isinstance(layer, contract.BaseChannelLayer)


def test_extensions(layer: Any) -> None:
    assert isinstance(layer.extensions, list)
    assert all(isinstance(name, str) for name in layer.extensions)
    for required in ("groups", "flush", "asyncio"):
        assert required in layer.extensions
    assert set(layer.extensions) <= {"groups", "flush", "statistics", "twisted", "asyncio"}
    for method in ("group_add", "group_discard", "group_channels", "send_group", "flush", "receive_async"):
        assert callable(getattr(layer, method))
    assert asyncio.iscoroutinefunction(layer.receive_async)


def test_statistics_when_listed(layer: Any) -> None:
    if "statistics" not in layer.extensions:
        pytest.skip(f"{type(layer).__name__} does not list the statistics extension")
    allowed = {
        "messages_count",
        "messages_count_per_second",
        "messages_pending",
        "messages_max_age",
        "channel_full_count",
        "channel_full_count_per_second",
    }
    layer.send("stats.test", {"n": 1})
    layer.send("stats.test", {"n": 2})
    stats = layer.channel_statistics("stats.test")
    assert isinstance(stats, dict) and stats and set(stats) <= allowed
    if "messages_pending" in stats:
        assert stats["messages_pending"] == 2
    overall = layer.global_statistics()
    assert isinstance(overall, dict) and overall and set(overall) <= allowed
    if "messages_pending" in overall:
        assert overall["messages_pending"] >= 2


def test_settings_attributes(make_layer: Any) -> None:
    layer = make_layer(capacity=7, expiry=30, group_expiry=600)
    assert layer.capacity == 7
    assert layer.expiry == 30
    assert layer.group_expiry == 600
    assert layer.get_capacity("any.channel") == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0},
        {"capacity": -1},
        {"capacity": "10"},
        {"expiry": 0},
        {"expiry": -5},
        {"group_expiry": 0},
        {"channel_capacity": {"http.*": 0}},
        {"channel_capacity": {42: 5}},
        {"max_message_size": 0},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_bad_settings_rejected(make_layer: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        make_layer(**kwargs)


def test_epoch(layer: Any) -> None:
    epoch = layer.epoch
    assert isinstance(epoch, int) and not isinstance(epoch, bool)
    layer.send("epoch.test", {})
    assert layer.check_epoch() == epoch
    assert layer.epoch == epoch


def test_close_is_idempotent(make_layer: Any) -> None:
    layer = make_layer()
    layer.close()
    layer.close()


# ------------------------------------------------------------ messages (§3)


def test_strings_and_types_round_trip(layer: Any) -> None:
    message = {
        "str": "Hello \x00\x01\x1f\x7f é ☃ 😀 \U0010fffd",
        "bytes": b"\x00\x01\xff\xfe bytes \r\n",
        "empty_str": "",
        "empty_bytes": b"",
        "nested": {"a": [b"x", "x", {"deep": [b"\x00", "\x00", [b"z", "z"]]}]},
        "tuple": (1, "two", b"three", (4.5, None)),
        "ints": [0, 1, -1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63)],
        "floats": [0.0, 1.5, -2.25, 1e308, -1e-308, math.inf, -math.inf],
        "bools": [True, False],
        "none": None,
        "unicode_key_\u00e9": "value",
    }
    layer.send("strings.test", message)
    channel, got = layer.receive(["strings.test"])
    assert channel == "strings.test"
    expected = dict(message, tuple=[1, "two", b"three", [4.5, None]])
    assert got == expected
    # Equality alone would let b"" == "" slip through other types; check types at depth.
    assert type(got["str"]) is str and type(got["bytes"]) is bytes
    assert type(got["empty_str"]) is str and type(got["empty_bytes"]) is bytes
    assert [type(v) for v in got["nested"]["a"][:2]] == [bytes, str]
    assert [type(v) for v in got["nested"]["a"][2]["deep"][:2]] == [bytes, str]
    assert [type(v) for v in got["nested"]["a"][2]["deep"][2]] == [bytes, str]
    assert [type(v) for v in got["bools"]] == [bool, bool]
    assert all(type(v) is int for v in got["ints"])
    assert all(type(v) is float for v in got["floats"])
    assert type(got["tuple"]) is list and type(got["tuple"][3]) is list


def same_value(sent: Any, got: Any) -> bool:
    """Equal *and* of the same types at every depth (tuples arrive as lists)."""
    if isinstance(sent, (list, tuple)):
        return type(got) is list and len(got) == len(sent) and all(map(same_value, sent, got))
    if isinstance(sent, dict):
        return type(got) is dict and sent.keys() == got.keys() and all(same_value(sent[k], got[k]) for k in sent)
    if isinstance(sent, float) and math.isnan(sent):
        return isinstance(got, float) and math.isnan(got)
    return type(got) is type(sent) and got == sent


ASGI_SCALARS = (
    st.binary(max_size=64)
    | st.text(max_size=64)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.none()
)
ASGI_VALUES = st.recursive(
    ASGI_SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
ASGI_MESSAGES = st.dictionaries(
    st.text(max_size=16).filter(lambda key: key != contract.ASGI_CHANNEL_KEY), ASGI_VALUES, max_size=6
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=ASGI_MESSAGES)
def test_any_asgi_message_round_trips(layer: Any, message: dict[str, Any]) -> None:
    layer.send("prop.test", message)
    channel, got = layer.receive(["prop.test"])
    assert channel == "prop.test"
    assert same_value(message, got), (message, got)


def test_float_nan_survives(layer: Any) -> None:
    layer.send("nan.test", {"f": math.nan})
    value = layer.receive(["nan.test"])[1]["f"]
    assert isinstance(value, float) and math.isnan(value)


def test_receiver_gets_a_copy(layer: Any) -> None:
    inner = [1, 2]
    message = {"list": inner, "dict": {"k": "v"}}
    layer.send("copy.test", message)
    inner.append(3)
    message["dict"]["k"] = "changed"
    message["new"] = True
    assert layer.receive(["copy.test"])[1] == {"list": [1, 2], "dict": {"k": "v"}}


def test_two_receivers_get_independent_copies(layer: Any) -> None:
    layer.group_add("copy.group", "copy.one")
    layer.group_add("copy.group", "copy.two")
    layer.send_group("copy.group", {"list": [1]})
    first = layer.receive(["copy.one"])[1]
    first["list"].append(2)
    assert layer.receive(["copy.two"])[1] == {"list": [1]}


@pytest.mark.parametrize(
    "message",
    [
        ["not", "a", "dict"],
        "a string",
        b"bytes",
        None,
        42,
        ("tuple",),
    ],
    ids=["list", "str", "bytes", "None", "int", "tuple"],
)
def test_non_dict_message_rejected_at_send(layer: Any, message: Any) -> None:
    with pytest.raises(TypeError):
        layer.send("bad.message", message)
    assert layer.receive(["bad.message"]) == (None, None)


@pytest.mark.parametrize(
    "message",
    [
        {"set": {1, 2}},
        {"obj": object()},
        {"complex": 1j},
        {"deep": {"list": [1, {"x": frozenset()}]}},
        {"bytearray": bytearray(b"x")},
        {1: "int key"},
        {b"bytes": "bytes key"},
        {"nested": {2: "int key at depth"}},
        {"list": [{None: 1}]},
        {"big": 2**64},
        {"neg": -(2**63) - 1},
        {contract.ASGI_CHANNEL_KEY: "reserved"},
    ],
    ids=[
        "set",
        "object",
        "complex",
        "deep-frozenset",
        "bytearray",
        "int-key",
        "bytes-key",
        "int-key-at-depth",
        "None-key-in-list",
        "int-over-64-bit",
        "int-under-64-bit",
        "reserved-key",
    ],
)
def test_bad_message_content_rejected_at_send(layer: Any, message: Any) -> None:
    with pytest.raises(TypeError):
        layer.send("bad.content", message)
    with pytest.raises(TypeError):
        layer.send_group("bad.group", message)
    assert layer.receive(["bad.content"]) == (None, None)


def test_one_megabyte_message_accepted(layer: Any) -> None:
    payload = bytes(range(256)) * (1_000_000 // 256 + 1)
    layer.send("big.test", {"bytes": payload[:1_000_000], "text": "t" * 1000})
    channel, got = layer.receive(["big.test"])
    assert channel == "big.test"
    assert got["bytes"] == payload[:1_000_000]


def test_message_too_large(layer: Any) -> None:
    with pytest.raises(layer.MessageTooLarge):
        layer.send("huge.test", {"bytes": b"x" * (3 * 1024 * 1024)})
    assert layer.receive(["huge.test"]) == (None, None)
    layer.send("huge.test", {"ok": True})  # the layer still works after the refusal
    assert layer.receive(["huge.test"]) == ("huge.test", {"ok": True})


def test_max_message_size_setting(make_layer: Any) -> None:
    layer = make_layer(max_message_size=1000)
    layer.send("limit.test", {"bytes": b"x" * 500})
    with pytest.raises(layer.MessageTooLarge):
        layer.send("limit.test", {"bytes": b"x" * 2000})
    layer.group_add("limit.group", "limit.member")
    with pytest.raises(layer.MessageTooLarge):
        layer.send_group("limit.group", {"bytes": b"x" * 2000})
    assert layer.receive(["limit.test"]) == ("limit.test", {"bytes": b"x" * 500})
    assert layer.receive(["limit.test", "limit.member"]) == (None, None)


# --------------------------------------------------------------- names (§2)

VALID_CHANNELS = [
    "http.request",
    "a",
    "A-Za-z0-9._-",
    "websocket.send!abc123",
    "http.response.AbC!FgH",
    "http.request.body?XyZ09",
    "x" * 100,
    "p" * 90 + "!" + "l" * 9,
]

INVALID_CHANNELS = [
    "",
    "has space",
    "tab\tname",
    "new\nline",
    "caf\u00e9",
    "slash/name",
    "colon:name",
    "a?b?c",
    "a!b!c",
    "a?b!c",
    "a!b?c",
    "ends.with?",
    "ends.with!",
    "?starts",
    "!starts",
    "x" * 1000,
]

NOT_STRINGS = [b"http.request", None, 42, ["a"], ("a",)]


@pytest.mark.parametrize("name", VALID_CHANNELS)
def test_valid_channel_names(layer: Any, name: str) -> None:
    layer.send(name, {"name": name})
    receive_name = name[: name.index("!") + 1] if "!" in name else name
    assert layer.receive([receive_name]) == (name, {"name": name})


@pytest.mark.parametrize("name", INVALID_CHANNELS + NOT_STRINGS)
def test_invalid_channel_names_rejected_by_send(layer: Any, name: Any) -> None:
    with pytest.raises(TypeError):
        layer.send(name, {"n": 1})


@pytest.mark.parametrize("name", [n for n in INVALID_CHANNELS if n != "ends.with!"] + NOT_STRINGS)
def test_invalid_channel_names_rejected_by_receive(layer: Any, name: Any) -> None:
    with pytest.raises(TypeError):
        layer.receive([name])
    with pytest.raises(TypeError):
        layer.receive(["ok.channel", name])


def test_receive_with_process_local_part_raises(layer: Any) -> None:
    layer.send("proc.AbC!local", {"n": 1})
    with pytest.raises(TypeError):
        layer.receive(["proc.AbC!local"])
    # The message is still there for the owner.
    assert layer.receive(["proc.AbC!"]) == ("proc.AbC!local", {"n": 1})


def test_long_channel_name_limit(layer: Any) -> None:
    # ≥ 100 characters are supported; the documented maximum is enforced exactly.
    longest = "l" * contract.MAX_NAME_LENGTH
    layer.send(longest, {"n": 1})
    assert layer.receive([longest]) == (longest, {"n": 1})
    with pytest.raises(TypeError):
        layer.send(longest + "l", {"n": 1})


VALID_GROUPS = ["chat", "chat-room_1.x", "A", "g" * 100, "g" * contract.MAX_NAME_LENGTH]
INVALID_GROUPS = ["", "a!b", "a?b", "group!", "group?", "has space", "caf\u00e9", "g" * (contract.MAX_NAME_LENGTH + 1)]


@pytest.mark.parametrize("group", VALID_GROUPS)
def test_valid_group_names(layer: Any, group: str) -> None:
    layer.group_add(group, "member.one")
    assert list(layer.group_channels(group)) == ["member.one"]
    layer.send_group(group, {"g": 1})
    assert layer.receive(["member.one"]) == ("member.one", {"g": 1})
    layer.group_discard(group, "member.one")
    assert list(layer.group_channels(group)) == []


@pytest.mark.parametrize("group", INVALID_GROUPS + NOT_STRINGS)
def test_invalid_group_names_rejected(layer: Any, group: Any) -> None:
    with pytest.raises(TypeError):
        layer.group_add(group, "member.one")
    with pytest.raises(TypeError):
        layer.group_discard(group, "member.one")
    with pytest.raises(TypeError):
        layer.send_group(group, {"n": 1})
    with pytest.raises(TypeError):
        layer.group_channels(group)


@pytest.mark.parametrize("channel", ["", "bad name", "ends!", "ends?", None, b"bytes", "x" * 1000])
def test_group_add_rejects_bad_channel(layer: Any, channel: Any) -> None:
    with pytest.raises(TypeError):
        layer.group_add("good.group", channel)


# ------------------------------------------------------------ new_channel


def test_new_channel(layer: Any) -> None:
    names = {layer.new_channel("reply.test?") for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.startswith("reply.test?") and len(name) > len("reply.test?")
        contract.validate_channel_name(name)
    sample = sorted(names)[:20]
    assert layer.receive(sample) == (None, None)


@pytest.mark.parametrize("pattern", ["x!", "x.y", "x", "", "x?y?", "bad name?", None, b"x?"])
def test_new_channel_rejects_bad_patterns(layer: Any, pattern: Any) -> None:
    with pytest.raises(TypeError):
        layer.new_channel(pattern)


def test_single_reader_channel_fifo(layer: Any) -> None:
    name = layer.new_channel("fifo.test?")
    for index in range(20):
        layer.send(name, {"n": index})
    assert [message["n"] for _, message in drain(layer, [name])] == list(range(20))
