"""The one conformance suite every shmchannels layer passes (asgi1.md §1–4).

Each test runs against every layer in ``conftest.LAYER_FACTORIES`` through the ``layer``
(default settings) or ``make_layer(**kwargs)`` fixtures. Expiry tests use 1 s expiries
and sleep just past them; nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmlayer import contract

# ---------------------------------------------------------------------- helpers


def drain(layer: Any, channels: list[str], limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
    """Receive (non-blocking) until the channels are empty; bounded."""
    got = []
    for _ in range(limit):
        channel, message = layer.receive(channels)
        if channel is None:
            return got
        got.append((channel, message))
    raise AssertionError(f"{channels} still not empty after {limit} messages")


def fill(layer: Any, channel: str, count: int) -> None:
    for index in range(count):
        layer.send(channel, {"n": index})


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
            with got_lock:
                if len(got) >= total:
                    return
            channel, message = layer.receive(["shared.work"], block=True)
            if channel is not None:
                with got_lock:
                    got.append((message["s"], message["n"]))

    threads = [threading.Thread(target=send_all, args=(sid,)) for sid in range(senders)]
    threads += [threading.Thread(target=receive_some) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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


# -------------------------------------------------------- process channels


def test_process_channel_full_name_and_fifo(layer: Any) -> None:
    prefix = "daphne.response.AbCdE!"
    sends = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4), ("a", 5)]
    for local, n in sends:
        layer.send(prefix + local, {"n": n})
    got = drain(layer, [prefix])
    assert sorted((channel, message["n"]) for channel, message in got) == sorted(
        (prefix + local, n) for local, n in sends
    )
    for local in "abc":
        order = [message["n"] for channel, message in got if channel == prefix + local]
        assert order == [n for l, n in sends if l == local]


def test_process_channels_of_other_prefixes_kept_apart(layer: Any) -> None:
    layer.send("proc.One!x", {"n": 1})
    layer.send("proc.Two!x", {"n": 2})
    assert layer.receive(["proc.One!"]) == ("proc.One!x", {"n": 1})
    assert layer.receive(["proc.One!"]) == (None, None)
    assert layer.receive(["proc.Two!"]) == ("proc.Two!x", {"n": 2})


def test_normal_channel_fifo_single_reader(layer: Any) -> None:
    for index in range(30):
        layer.send("normal.fifo", {"n": index})
    assert [message["n"] for _, message in drain(layer, ["normal.fifo"])] == list(range(30))


def test_no_starvation(layer: Any) -> None:
    fill(layer, "busy.channel", 60)
    layer.send("quiet.channel", {"quiet": True})
    for _ in range(40):
        channel, _message = layer.receive(["busy.channel", "quiet.channel"])
        if channel == "quiet.channel":
            return
    pytest.fail("the quiet channel was starved by the busy one over 40 receives")


def test_no_starvation_many_channels(layer: Any) -> None:
    channels = [f"fair.c{index}" for index in range(5)]
    for channel in channels:
        fill(layer, channel, 30)
    seen = {layer.receive(channels)[0] for _ in range(60)}
    assert seen == set(channels)


# ------------------------------------------------------------- capacity (§4)


def test_default_capacity(layer: Any) -> None:
    assert layer.capacity == 100
    fill(layer, "cap.default", 100)
    with pytest.raises(layer.ChannelFull):
        layer.send("cap.default", {"n": 100})


def test_capacity(make_layer: Any) -> None:
    layer = make_layer(capacity=3)
    fill(layer, "cap.test", 3)
    with pytest.raises(layer.ChannelFull):
        layer.send("cap.test", {"n": 3})
    with pytest.raises(contract.ChannelFull):
        layer.send("cap.test", {"n": 3})
    layer.send("cap.other", {"n": 0})  # other channels are not affected
    assert layer.receive(["cap.test"]) == ("cap.test", {"n": 0})
    layer.send("cap.test", {"n": 3})
    assert [m["n"] for _, m in drain(layer, ["cap.test"])] == [1, 2, 3]


def test_channel_capacity_first_match_wins(make_layer: Any) -> None:
    layer = make_layer(
        capacity=5,
        channel_capacity={
            "http.response!*": 2,
            re.compile(r"^websocket\.send!.+"): 3,
            "http.*": 4,
            "*": 1,
        },
    )
    expectations = {
        "http.response!abc": 2,
        "websocket.send!xyz": 3,
        "http.request": 4,
        "other.channel": 1,
    }
    for channel, capacity in expectations.items():
        assert layer.get_capacity(channel) == capacity
        fill(layer, channel, capacity)
        with pytest.raises(layer.ChannelFull):
            layer.send(channel, {"n": capacity})


def test_channel_capacity_regex_and_default(make_layer: Any) -> None:
    layer = make_layer(capacity=2, channel_capacity={re.compile(r"^big\..*"): 6})
    assert layer.get_capacity("big.one") == 6
    assert layer.get_capacity("small.one") == 2
    fill(layer, "big.one", 6)
    fill(layer, "small.one", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send("big.one", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("small.one", {})


def test_capacity_per_full_process_channel_name(make_layer: Any) -> None:
    layer = make_layer(capacity=2)
    prefix = "interface.CaP!"
    fill(layer, prefix + "one", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send(prefix + "one", {"n": 2})
    fill(layer, prefix + "two", 2)  # a second reply channel of the same process has its own room
    with pytest.raises(layer.ChannelFull):
        layer.send(prefix + "two", {"n": 2})
    got = drain(layer, [prefix])
    assert sorted(channel for channel, _ in got) == [prefix + "one"] * 2 + [prefix + "two"] * 2


def test_capacity_single_reader_channel(make_layer: Any) -> None:
    layer = make_layer(capacity=2)
    name = layer.new_channel("cap.reply?")
    fill(layer, name, 2)
    with pytest.raises(layer.ChannelFull):
        layer.send(name, {})


# -------------------------------------------------------------- expiry (§4)


def test_message_expiry_is_per_message(make_layer: Any) -> None:
    layer = make_layer(expiry=1)
    layer.send("exp.test", {"n": "early"})
    time.sleep(0.35)
    layer.send("exp.test", {"n": "late"})  # must not extend the first message's life
    time.sleep(0.75)
    # "early" is 1.1 s old: never delivered; "late" is 0.75 s old: delivered.
    assert layer.receive(["exp.test"]) == ("exp.test", {"n": "late"})
    assert layer.receive(["exp.test"]) == (None, None)


def test_expired_messages_do_not_count_toward_capacity(make_layer: Any) -> None:
    layer = make_layer(expiry=1, capacity=2)
    fill(layer, "exp.cap", 2)
    prefix = "exp.proc!"
    fill(layer, prefix + "a", 2)
    with pytest.raises(layer.ChannelFull):
        layer.send("exp.cap", {})
    time.sleep(1.1)
    fill(layer, "exp.cap", 2)
    fill(layer, prefix + "a", 2)
    assert [m["n"] for _, m in drain(layer, ["exp.cap"])] == [0, 1]
    assert [m["n"] for _, m in drain(layer, [prefix])] == [0, 1]


def test_expired_message_not_delivered_to_process_or_reply_channel(make_layer: Any) -> None:
    layer = make_layer(expiry=1)
    reply = layer.new_channel("exp.reply?")
    layer.send(reply, {"n": 1})
    layer.send("exp.proc2!x", {"n": 1})
    layer.group_add("exp.g", "exp.member")
    layer.send_group("exp.g", {"n": 1})
    time.sleep(1.1)
    assert layer.receive([reply, "exp.proc2!", "exp.member"]) == (None, None)


def test_expired_unread_channel_leaves_its_groups(make_layer: Any) -> None:
    layer = make_layer(expiry=1, group_expiry=60)
    for group in ("leave.one", "leave.two"):
        layer.group_add(group, "leave.slow")
        layer.group_add(group, "leave.fast")
    layer.send_group("leave.one", {"n": 1})
    assert layer.receive(["leave.fast"]) == ("leave.fast", {"n": 1})
    time.sleep(1.1)
    # leave.slow let its message expire unread; give a lazy layer the chance to notice.
    assert layer.receive(["leave.slow"]) == (None, None)
    for group in ("leave.one", "leave.two"):
        assert set(layer.group_channels(group)) == {"leave.fast"}
    layer.send_group("leave.two", {"n": 2})
    assert layer.receive(["leave.slow"]) == (None, None)
    assert layer.receive(["leave.fast"]) == ("leave.fast", {"n": 2})


# --------------------------------------------------------------- groups (§1)


def test_group_basics(layer: Any) -> None:
    layer.group_add("grp.test", "grp.one")
    layer.group_add("grp.test", "grp.two")
    layer.group_add("grp.test", "grp.proc!three")
    assert set(layer.group_channels("grp.test")) == {"grp.one", "grp.two", "grp.proc!three"}
    layer.send_group("grp.test", {"hello": "all"})
    assert layer.receive(["grp.one"]) == ("grp.one", {"hello": "all"})
    assert layer.receive(["grp.two"]) == ("grp.two", {"hello": "all"})
    assert layer.receive(["grp.proc!"]) == ("grp.proc!three", {"hello": "all"})
    assert layer.receive(["grp.one", "grp.two", "grp.proc!"]) == (None, None)


def test_group_add_is_idempotent(layer: Any) -> None:
    for _ in range(3):
        layer.group_add("idem.group", "idem.member")
    assert list(layer.group_channels("idem.group")) == ["idem.member"]
    layer.send_group("idem.group", {"n": 1})
    assert layer.receive(["idem.member"]) == ("idem.member", {"n": 1})
    assert layer.receive(["idem.member"]) == (None, None)


def test_group_discard(layer: Any) -> None:
    layer.group_add("disc.group", "disc.one")
    layer.group_add("disc.group", "disc.two")
    layer.group_discard("disc.group", "disc.one")
    layer.group_discard("disc.group", "disc.one")  # silent when absent
    layer.group_discard("disc.group", "never.member")
    layer.group_discard("no.such.group", "disc.two")
    assert list(layer.group_channels("disc.group")) == ["disc.two"]
    layer.send_group("disc.group", {"n": 1})
    assert layer.receive(["disc.one"]) == (None, None)
    assert layer.receive(["disc.two"]) == ("disc.two", {"n": 1})


def test_groups_are_independent(layer: Any) -> None:
    layer.group_add("ind.a", "ind.member")
    layer.group_add("ind.b", "ind.member")
    layer.group_discard("ind.a", "ind.member")
    assert list(layer.group_channels("ind.a")) == []
    assert list(layer.group_channels("ind.b")) == ["ind.member"]


def test_unknown_group(layer: Any) -> None:
    layer.send_group("unknown.group", {"n": 1})
    assert list(layer.group_channels("unknown.group")) == []


def test_send_group_skips_full_members(make_layer: Any) -> None:
    layer = make_layer(capacity=1)
    layer.group_add("full.group", "full.member")
    layer.group_add("full.group", "free.member")
    layer.send("full.member", {"n": "first"})
    layer.send_group("full.group", {"n": "group"})  # never raises ChannelFull
    assert layer.receive(["free.member"]) == ("free.member", {"n": "group"})
    assert layer.receive(["full.member"]) == ("full.member", {"n": "first"})
    assert layer.receive(["full.member"]) == (None, None)
    # Skipping a member does not remove it.
    assert set(layer.group_channels("full.group")) == {"full.member", "free.member"}


def test_send_group_to_reply_channels_of_one_process(make_layer: Any) -> None:
    # asgi1.md §10: a broadcast to many sockets on one interface must not lose copies.
    layer = make_layer(capacity=2)
    prefix = "interface.FaN!"
    members = [f"{prefix}conn{index}" for index in range(10)]
    for member in members:
        layer.group_add("fan.group", member)
    layer.send_group("fan.group", {"n": 1})
    layer.send_group("fan.group", {"n": 2})
    got = drain(layer, [prefix])
    assert sorted(channel for channel, _ in got) == sorted(members * 2)


def test_group_expiry(make_layer: Any) -> None:
    layer = make_layer(group_expiry=1)
    layer.group_add("gexp.group", "gexp.old")
    time.sleep(0.5)
    layer.group_add("gexp.group", "gexp.renewed")
    time.sleep(0.7)
    # gexp.old was added 1.2 s ago: gone; gexp.renewed 0.7 s ago: still a member.
    assert list(layer.group_channels("gexp.group")) == ["gexp.renewed"]
    layer.send_group("gexp.group", {"n": 1})
    assert layer.receive(["gexp.old"]) == (None, None)
    assert layer.receive(["gexp.renewed"]) == ("gexp.renewed", {"n": 1})


def test_group_add_renews_membership(make_layer: Any) -> None:
    layer = make_layer(group_expiry=1)
    layer.group_add("renew.group", "renew.member")
    time.sleep(0.6)
    layer.group_add("renew.group", "renew.member")
    time.sleep(0.6)
    assert list(layer.group_channels("renew.group")) == ["renew.member"]


# ------------------------------------------------------------ flush / prefix


def test_flush(layer: Any) -> None:
    layer.send("flush.a", {"n": 1})
    layer.send("flush.proc!x", {"n": 1})
    reply = layer.new_channel("flush.reply?")
    layer.send(reply, {"n": 1})
    layer.group_add("flush.group", "flush.a")
    layer.flush()
    assert layer.receive(["flush.a", "flush.proc!", reply]) == (None, None)
    assert list(layer.group_channels("flush.group")) == []
    # Still usable, with full capacity.
    fill(layer, "flush.a", layer.capacity)
    assert len(drain(layer, ["flush.a"])) == layer.capacity


def test_discard_prefix(layer: Any) -> None:
    dead, alive = "interface.DeAd!", "interface.LiVe!"
    layer.send(dead + "a", {"n": 1})
    layer.send(dead + "b", {"n": 2})
    layer.send(alive + "a", {"n": 3})
    layer.send("http.request", {"n": 4})
    for member in (dead + "a", dead + "b", alive + "a", "plain.member"):
        layer.group_add("prefix.group", member)
    layer.discard_prefix(dead)
    assert layer.receive([dead]) == (None, None)
    assert layer.receive([alive]) == (alive + "a", {"n": 3})
    assert layer.receive(["http.request"]) == ("http.request", {"n": 4})
    assert set(layer.group_channels("prefix.group")) == {alive + "a", "plain.member"}
    # The dead prefix's channels work again if something sends to them later.
    layer.send(dead + "a", {"n": 5})
    assert layer.receive([dead]) == (dead + "a", {"n": 5})


# --------------------------------------------------------- asyncio extension


def test_receive_async_returns_pending_message(layer: Any) -> None:
    layer.send("async.pending", {"n": 1})
    assert asyncio.run(layer.receive_async(["async.pending"], timeout=5)) == ("async.pending", {"n": 1})


def test_receive_async_process_channel(layer: Any) -> None:
    layer.send("async.proc!conn1", {"n": 1})
    assert asyncio.run(layer.receive_async(["async.proc!"], timeout=5)) == ("async.proc!conn1", {"n": 1})


def test_receive_async_timeout(layer: Any) -> None:
    assert asyncio.run(layer.receive_async(["async.none"], timeout=0.2)) == (None, None)


def test_receive_async_wakes_on_send_from_thread(layer: Any) -> None:
    async def main() -> Any:
        timer = threading.Timer(0.1, layer.send, args=("async.thread", {"n": 2}))
        timer.start()
        try:
            # The layer's own timeout is far beyond wait_for's: only a real wake-up passes.
            return await asyncio.wait_for(layer.receive_async(["async.thread"], timeout=60), 5)
        finally:
            timer.join(5)

    assert asyncio.run(main()) == ("async.thread", {"n": 2})


def test_receive_async_wakes_on_send_from_task(layer: Any) -> None:
    async def main() -> Any:
        waiter = asyncio.ensure_future(layer.receive_async(["async.task", "async.other"], timeout=60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        layer.send("async.task", {"n": 3})
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == ("async.task", {"n": 3})


def test_receive_async_wakes_on_send_group(layer: Any) -> None:
    layer.group_add("async.group", "async.gproc!c1")

    async def main() -> Any:
        waiter = asyncio.ensure_future(layer.receive_async(["async.gproc!"], timeout=60))
        await asyncio.sleep(0.05)
        layer.send_group("async.group", {"n": 4})
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == ("async.gproc!c1", {"n": 4})


def test_receive_async_does_not_block_the_loop(layer: Any) -> None:
    async def main() -> tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        try:
            result = await layer.receive_async(["async.idle"], timeout=0.5)
        finally:
            task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == (None, None)
    assert ticks >= 3, "the event loop did not run while receive_async waited"


def test_receive_async_cancelled_loses_nothing(layer: Any) -> None:
    async def main() -> None:
        waiter = asyncio.ensure_future(layer.receive_async(["async.cancel"], timeout=10))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    layer.send("async.cancel", {"n": 5})
    assert layer.receive(["async.cancel"]) == ("async.cancel", {"n": 5})


def test_receive_async_empty_list(layer: Any) -> None:
    # Like receive([]): nothing can ever arrive, so answer at once instead of hanging.
    async def main() -> Any:
        return [
            await asyncio.wait_for(layer.receive_async([]), 5),
            await asyncio.wait_for(layer.receive_async([], timeout=30), 5),
        ]

    assert asyncio.run(main()) == [(None, None), (None, None)]


def test_receive_async_validates_names(layer: Any) -> None:
    with pytest.raises(TypeError):
        asyncio.run(layer.receive_async(["proc.AbC!local"], timeout=0.1))
    with pytest.raises(TypeError):
        asyncio.run(layer.receive_async(["bad name"], timeout=0.1))
