"""A separate process acting on a shared layer store, for the cross-process conformance tests.

``python -m tests.layers._peer '<json>'`` with ``{"layer": [class path, kwargs],
"actions": [[name, *args], ...]}``. Opens the layer, runs the actions in order, closes it
and prints one JSON line: the list of results of the actions that return something.

Actions: ``["sleep", seconds]``, ``["send", channel, message]``,
``["group_add", group, channel]``, ``["send_group", group, message]``,
``["receive", channels]`` (one non-blocking receive -> [channel, message]),
``["receive_block", channels, deadline]`` (blocking receives until a message or the
deadline -> [channel, message]), ``["drain", channels]`` (receive until empty ->
list of [channel, message]).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any


def _run(layer: Any, action: str, args: list[Any]) -> tuple[bool, Any]:
    if action == "sleep":
        time.sleep(args[0])
        return False, None
    if action in ("send", "group_add", "send_group"):
        getattr(layer, action)(*args)
        return False, None
    if action == "receive":
        return True, list(layer.receive(args[0]))
    if action == "receive_block":
        deadline = time.monotonic() + args[1]
        while time.monotonic() < deadline:
            channel, message = layer.receive(args[0], block=True)
            if channel is not None:
                return True, [channel, message]
        return True, [None, None]
    if action == "drain":
        got = []
        for _ in range(100_000):
            channel, message = layer.receive(args[0])
            if channel is None:
                break
            got.append([channel, message])
        return True, got
    raise ValueError(f"unknown peer action {action!r}")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    class_path, kwargs = spec["layer"]
    module, _, name = class_path.rpartition(".")
    layer = getattr(importlib.import_module(module), name)(**kwargs)
    results = []
    try:
        for action, *args in spec["actions"]:
            has_result, result = _run(layer, action, args)
            if has_result:
                results.append(result)
    finally:
        layer.close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
