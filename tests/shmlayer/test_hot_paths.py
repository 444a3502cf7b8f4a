"""The performance fast paths keep the exact behaviour of the general paths."""

from __future__ import annotations

import asyncio

import pytest

from shmlayer import contract
from shmlayer.contract import validate_message


@pytest.fixture(params=["c", "python"])
def fast_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """validate_message's fast check: the C one (_fastpath.plain), then the Python reference."""
    if request.param == "python":
        monkeypatch.setattr(contract, "_plain_check", contract._plain)
    else:
        assert contract._plain_check is not contract._plain, "the C check did not import"
    return str(request.param)


class StrKey(str):
    pass


class Bytesish(bytes):
    pass


@pytest.mark.parametrize("message", [
    {"a": 1, "b": [1, "x", b"y", None, True, 1.5, (2, 3)], "c": {"d": {"e": []}}},
    {StrKey("k"): Bytesish(b"v")},  # subclasses take the full check and pass it
    {"n": -(2**63), "m": 2**63 - 1},
])
def test_validate_message_accepts(message: dict, fast_check: str) -> None:
    assert validate_message(message) is message


@pytest.mark.parametrize("message, where", [
    ({"a": [{"b": {1: "x"}}]}, "message['a'][0]['b'][1]"),
    ({"a": [1, 2, object()]}, "message['a'][2]"),
    ({"a": {"b": 2**63}}, "message['a']['b']"),
    ({"a": {1, 2}}, "message['a']"),
])
def test_validate_message_rejects_with_path(message: dict, where: str, fast_check: str) -> None:
    with pytest.raises(TypeError) as info:
        validate_message(message)
    assert where in str(info.value)


def test_receive_batch_takes_everything_in_order(layer) -> None:
    prefix = "test.batch!"
    for i in range(5):
        layer.send(f"{prefix}c{i % 2}", {"i": i})
    layer.send("test.other", {"i": 99})
    got = layer.receive_batch([prefix], 3)
    assert [(name, msg["i"]) for name, msg in got] == [(f"{prefix}c0", 0), (f"{prefix}c1", 1), (f"{prefix}c0", 2)]
    got = layer.receive_batch([prefix], 64)
    assert [msg["i"] for _, msg in got] == [3, 4]
    assert layer.receive_batch([prefix], 64) == []
    assert layer.receive(["test.other"]) == ("test.other", {"i": 99})


def test_receive_batch_rejects_bad_names(layer) -> None:
    with pytest.raises(TypeError):
        layer.receive_batch("test.one")
    with pytest.raises(TypeError):
        layer.receive_batch(["bad name"])
    assert layer.receive_batch([]) == []


def test_receive_async_times_out_then_receives(layer) -> None:
    async def main() -> tuple:
        first = await layer.receive_async(["test.async"], timeout=0.05)
        asyncio.get_running_loop().call_later(0.05, layer.send, "test.async", {"x": 1})
        second = await asyncio.wait_for(layer.receive_async(["test.async"], timeout=5), 10)
        return first, second

    first, second = asyncio.run(main())
    assert first == (None, None)
    assert second == ("test.async", {"x": 1})


def test_receive_async_cancelled_gives_the_waiter_back(layer) -> None:
    async def main() -> tuple:
        task = asyncio.ensure_future(layer.receive_async(["test.cancel"]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        layer.send("test.cancel", {"y": 2})
        return await asyncio.wait_for(layer.receive_async(["test.cancel"], timeout=5), 10)

    assert asyncio.run(main()) == ("test.cancel", {"y": 2})


def test_a_message_that_contains_itself_is_a_clear_type_error(fast_check: str) -> None:
    message: dict = {"text": "x"}
    message["self"] = message
    with pytest.raises(TypeError, match="nested too deeply"):
        validate_message(message)
    looped: list = []
    looped.append(looped)
    with pytest.raises(TypeError, match="nested too deeply"):
        validate_message({"list": looped})
