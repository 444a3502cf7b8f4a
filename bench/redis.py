"""Redis layer benchmark: channels.layers.redis beside channels_redis 4 and the shm layer.

Everything runs on one private redis-server started here (no persistence, 127.0.0.1, free
port, stopped by pid). channels_redis 4 lives in its own virtualenv
(``.bench/channels_redis4``, made on first use) because its ``channels`` 4 package would
clash with ours; it runs in a child process with the same workload and reports JSON.
Every loop is bounded by a count and by the section's time budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench import _load

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".bench" / "channels_redis4"
PAIRS = 3000  # send then receive, one at a time (latency-bound)
BURST = 3000  # send all, then receive all
GROUP_SIZES = (100, 1000)
GROUP_ROUNDS = 5
BUDGET = 50.0  # seconds for the whole section

# The same workload for channels_redis 4 (asyncio API), run in its own virtualenv.
_PEER_SCRIPT = r"""
import asyncio, json, sys, time
from channels_redis.core import RedisChannelLayer

url, pairs, burst, sizes, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])

async def main():
    layer = RedisChannelLayer(hosts=[url], prefix="bench-cr4", capacity=burst + 10)
    out = {}
    start = time.perf_counter()
    for i in range(pairs):
        await layer.send("pair.test", {"type": "t", "n": i})
        await layer.receive("pair.test")
    out["pairs"] = pairs / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(burst):
        await layer.send("burst.test", {"type": "t", "n": i})
    for i in range(burst):
        await layer.receive("burst.test")
    out["burst"] = burst / (time.perf_counter() - start)
    for size in sizes:
        members = [f"member{size}.{i}" for i in range(size)]
        for member in members:
            await layer.group_add(f"g{size}", member)
        send_time = drain_time = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            await layer.group_send(f"g{size}", {"type": "t", "hello": "world"})
            send_time += time.perf_counter() - start
            start = time.perf_counter()
            for member in members:
                await layer.receive(member)
            drain_time += time.perf_counter() - start
        out[f"group{size}_send_ms"] = send_time / rounds * 1000
        out[f"group{size}_copies"] = size * rounds / (send_time + drain_time)
    await layer.flush()
    print(json.dumps(out))

asyncio.run(main())
"""


def _measure(layer: Any, process_members: bool = False) -> dict[str, float]:
    """The workload on one of our layers (sync API, as workers use it)."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    for index in range(PAIRS):
        layer.send("pair.test", {"n": index})
        layer.receive(["pair.test"])
    out["pairs"] = PAIRS / (time.perf_counter() - start)
    start = time.perf_counter()
    for index in range(BURST):
        layer.send("burst.test", {"n": index})
    for _ in range(BURST):
        layer.receive(["burst.test"])
    out["burst"] = BURST / (time.perf_counter() - start)
    for size in GROUP_SIZES:
        if process_members:  # all reply channels of one interface process
            members = [f"iface{size}.B!{index}" for index in range(size)]
            queues = [[f"iface{size}.B!"]] * size
        else:
            members = [f"member{size}.{index}" for index in range(size)]
            queues = [[member] for member in members]
        for member in members:
            layer.group_add(f"g{size}", member)
        send_time = drain_time = 0.0
        for _ in range(GROUP_ROUNDS):
            start = time.perf_counter()
            layer.send_group(f"g{size}", {"hello": "world"})
            send_time += time.perf_counter() - start
            start = time.perf_counter()
            for names in queues:
                layer.receive(names)
            drain_time += time.perf_counter() - start
        out[f"group{size}_send_ms"] = send_time / GROUP_ROUNDS * 1000
        out[f"group{size}_copies"] = size * GROUP_ROUNDS / (send_time + drain_time)
    return out


def _ensure_peer() -> Path | None:
    """The virtualenv python with channels_redis 4, made once (outside the time budget)."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    if not stamp.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=60)
            subprocess.run(
                [str(PEER_VENV / "bin" / "pip"), "install", "-q", "channels-redis>=4,<5"],
                check=True,
                timeout=180,
                stdout=subprocess.DEVNULL,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"bench.redis: could not install channels_redis 4: {exc}", file=sys.stderr)
            return None
        stamp.touch()
    return python


def _run_peer(python: Path, url: str, timeout: float) -> dict[str, float] | str:
    # -I: isolated, so the child never imports our channels package from the cwd
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _PEER_SCRIPT, url, str(PAIRS), str(BURST), json.dumps(GROUP_SIZES), str(GROUP_ROUNDS)],
            capture_output=True,
            text=True,
            timeout=max(5.0, timeout),
            cwd=tempfile.gettempdir(),
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return dict(json.loads(done.stdout))


def _shm_results() -> dict[str, float] | str:
    try:
        from shmlayer import ShmChannelLayer
    except ImportError as exc:
        return f"not importable: {exc}"
    name = f"bench-redis-{os.getpid()}"
    layer = ShmChannelLayer(name=name, size=64 * 1024 * 1024, capacity=BURST + 10)
    try:
        return _measure(layer, process_members=True)
    finally:
        layer.unlink()
        layer.close()


ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("send + receive, one at a time", "pairs", lambda v: f"{v:,.0f} msg/s"),
    (f"send {BURST}, then receive them", "burst", lambda v: f"{v:,.0f} msg/s"),
    ("send_group to 100 members (call latency)", "group100_send_ms", lambda v: f"{v:.2f} ms"),
    ("group of 100: copies sent + received", "group100_copies", lambda v: f"{v:,.0f} copies/s"),
    ("send_group to 1000 members (call latency)", "group1000_send_ms", lambda v: f"{v:.2f} ms"),
    ("group of 1000: copies sent + received", "group1000_copies", lambda v: f"{v:,.0f} copies/s"),
]


def _ratio(ours: float, other: float, key: str) -> str:
    if not other or not ours:
        return "–"
    # latency: lower is better, so the ratio says how many times faster we are
    value = other / ours if key.endswith("_ms") else ours / other
    return f"{value:.2f}×"


def _table(results: dict[str, dict[str, float] | str]) -> str:
    names = list(results)
    head = "| workload | " + " | ".join(names) + " | ours ÷ channels_redis 4 | ours ÷ shm |\n"
    head += "|---" * (len(names) + 3) + "|\n"
    ours = results["ours (Redis)"]
    lines = []
    for label, key, fmt in ROWS:
        cells = []
        for name in names:
            value = results[name]
            cells.append(fmt(value[key]) if isinstance(value, dict) and key in value else "–")
        ratios = []
        for peer in ("channels_redis 4", "shm layer"):
            other = results.get(peer)
            if isinstance(ours, dict) and isinstance(other, dict):
                ratios.append(_ratio(ours[key], other[key], key))
            else:
                ratios.append("–")
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return head + "\n".join(lines) + "\n"


def run() -> str:
    """Measure and return the ``## Redis layer`` markdown section."""
    from channels.layers.redis import RedisChannelLayer

    started = time.monotonic()
    python = _ensure_peer()
    results: dict[str, dict[str, float] | str] = {}
    with _load.redis_server() as url:
        budget_start = time.monotonic()
        ours: dict[bool, dict[str, float]] = {}
        for process_members in (False, True):
            layer = RedisChannelLayer(hosts=[url], prefix=f"bench-ours-{process_members}:", capacity=BURST + 10)
            try:
                ours[process_members] = _measure(layer, process_members=process_members)
            finally:
                layer.flush()
                layer.close()
        results["ours (Redis)"], ours_process = ours[False], ours[True]
        remaining = BUDGET - (time.monotonic() - budget_start)
        results["channels_redis 4"] = _run_peer(python, url, remaining) if python else "not installed"
        results["shm layer"] = _shm_results()
    notes = [f"- {name}: {value}" for name, value in results.items() if isinstance(value, str)]
    text = [
        "## Redis layer\n",
        "`channels.layers.redis.RedisChannelLayer` (sync API, as workers call it) beside "
        "channels_redis 4.x (asyncio API, its own virtualenv) on the same private redis-server "
        "(no persistence, loopback), and beside the shm layer on this host. Every operation of "
        "ours is one Lua script = one round trip; a group send is one round trip whatever the "
        f"group size. Messages are small dicts; {GROUP_ROUNDS} rounds per group size; group members "
        "are ordinary channels, each drained with its own receive call.\n",
        _table(results),
    ]
    text.append(
        "With the group's members being the reply channels of one interface process (`pre!n`, "
        "the usual broadcast shape, drained by receiving on `pre!`): group of 1000 "
        f"{ours_process['group1000_copies']:,.0f} copies/s, send_group {ours_process['group1000_send_ms']:.2f} ms.\n"
    )
    if notes:
        text.append("Not measured:\n" + "\n".join(notes) + "\n")
    text.append(f"Section run time {time.monotonic() - started:.0f} s.\n")
    return "\n".join(text)


if __name__ == "__main__":
    print(run())
