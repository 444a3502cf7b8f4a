"""The C message check ``_fastpath.plain`` against its Python reference ``contract._plain``."""

from __future__ import annotations

import enum
import sys
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmlayer import _fastpath, contract
from shmlayer._fastpath import PLAIN_MAX_DEPTH, plain

I64 = 2**63


class StrSub(str):
    pass


class BytesSub(bytes):
    pass


class IntSub(int):
    pass


class FloatSub(float):
    pass


class DictSub(dict[Any, Any]):
    pass


class ListSub(list[Any]):
    pass


class TupleSub(tuple[Any, ...]):
    pass


class Colour(enum.IntEnum):
    RED = 1


def nesting(value: Any) -> int:
    """How many containers deep ``value`` goes (0 for a scalar)."""
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([I64 - 1, I64, -I64, -I64 - 1, 0, -1, 2**64, -(2**64), 10**30]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    ints,
)
oddities = st.one_of(
    st.text(max_size=4).map(StrSub),
    st.binary(max_size=4).map(BytesSub),
    ints.map(IntSub),
    st.floats(allow_nan=False).map(FloatSub),
    st.just(Colour.RED),
    st.builds(object),
    st.frozensets(st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3),
    st.builds(complex, st.floats(allow_nan=False), st.floats(allow_nan=False)),
    st.binary(max_size=4).map(bytearray),
    st.just(NotImplemented),
    st.just(type),
)
keys = st.one_of(
    st.text(max_size=6),
    st.text(max_size=6),
    st.text(max_size=4).map(StrSub),
    st.integers(),
    st.binary(max_size=4),
    st.none(),
    st.tuples(st.integers()),
    st.booleans(),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=5),
        st.dictionaries(keys, children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=3).map(DictSub),
        st.lists(children, max_size=3).map(ListSub),
        st.lists(children, max_size=3).map(TupleSub),
    )


# Mostly plain values, so that True answers (and deep plain walks) are common too.
values = st.recursive(
    st.one_of(scalars, scalars, scalars, oddities),
    containers,
    max_leaves=40,
)


def outcome(check: Callable[[object], bool], message: object) -> tuple[str, str]:
    """validate_message's result with ``check`` as its fast check: ok, or the error."""
    saved = contract._plain_check
    contract._plain_check = check
    try:
        contract.validate_message(message)
        return ("ok", "")
    except TypeError as exc:
        return ("TypeError", str(exc))
    finally:
        contract._plain_check = saved


def test_contract_uses_the_c_check() -> None:
    assert contract._plain_check is _fastpath.plain
    assert PLAIN_MAX_DEPTH == 64


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_c_plain_agrees_with_python_plain(value: Any) -> None:
    expected = contract._plain(value) and nesting(value) <= PLAIN_MAX_DEPTH
    assert plain(value) is expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), values, max_size=4))
def test_validate_message_same_outcome_with_either_check(message: dict[str, Any]) -> None:
    assert outcome(plain, message) == outcome(contract._plain, message)


@pytest.mark.parametrize("value, answer", [
    ({"a": 1}, True),
    ({"n": -I64, "m": I64 - 1, "x": [None, True, 1.5, b"y", ("t",)]}, True),
    ({"m": I64}, False),
    ({"n": -I64 - 1}, False),
    ({1: "x"}, False),
    ({StrSub("k"): 1}, False),
    ({"k": StrSub("v")}, False),
    ({"k": IntSub(1)}, False),
    ({"k": Colour.RED}, False),
    ({"k": {1, 2}}, False),
    ({"k": object()}, False),
    (DictSub(a=1), False),
    ([1, 2], True),
    ((), True),
    (I64 - 1, True),
    (2**200, False),
    (float("nan"), True),
    ({"k": bytearray(b"x")}, False),
])
def test_known_answers(value: object, answer: bool) -> None:
    assert plain(value) is answer
    assert contract._plain(value) is answer


def nested(depth: int, kind: str) -> Any:
    """``depth`` containers of ``kind`` (dict, list, tuple, mixed) around an int."""
    value: Any = 7
    for level in range(depth):
        pick = kind if kind != "mixed" else ("dict", "list", "tuple")[level % 3]
        value = {"k": value} if pick == "dict" else [value] if pick == "list" else (value,)
    return value


@pytest.mark.parametrize("kind", ["dict", "list", "tuple", "mixed"])
def test_depth_limit(kind: str) -> None:
    assert plain(nested(PLAIN_MAX_DEPTH, kind)) is True
    assert plain(nested(PLAIN_MAX_DEPTH + 1, kind)) is False
    assert plain(nested(PLAIN_MAX_DEPTH + 1, "list")[0]) is True  # the same value, one level up
    # A bad value below the limit is found whatever the depth.
    bad: Any = object()
    for _ in range(10):
        bad = [bad]
    assert plain(bad) is False


@pytest.mark.parametrize("depth", [PLAIN_MAX_DEPTH, PLAIN_MAX_DEPTH + 1, 300, sys.getrecursionlimit() + 50])
def test_deep_messages_get_the_same_answer_from_validate_message(depth: int) -> None:
    message = {"deep": nested(depth, "mixed")}
    assert outcome(plain, message) == outcome(contract._plain, message)
    if depth <= 300:
        assert outcome(plain, message) == ("ok", "")
    else:
        assert outcome(plain, message) == ("TypeError", "Message is nested too deeply (does it contain itself?)")


def test_self_containing_values_answer_false_without_raising() -> None:
    loop: list[Any] = []
    loop.append(loop)
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    assert plain(loop) is False
    assert plain(cyclic) is False
    assert plain({"t": (loop,)}) is False


def test_plain_takes_exactly_one_argument() -> None:
    with pytest.raises(TypeError):
        plain()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        plain(1, 2)  # type: ignore[call-arg]


def test_contract_falls_back_to_python_without_the_extension() -> None:
    # contract.py loaded outside its package: the relative import of _fastpath fails as
    # it would with the extension missing, and the Python reference takes over.
    import importlib.util

    spec = importlib.util.spec_from_file_location("contract_without_c", contract.__file__)
    assert spec is not None and spec.loader is not None
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    assert alone._plain_check is alone._plain
    assert alone.validate_message({"a": [1, (2, b"x")]}) == {"a": [1, (2, b"x")]}
    with pytest.raises(TypeError, match=r"message\['a'\]\[1\]"):
        alone.validate_message({"a": [1, {2}]})
