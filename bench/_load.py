"""Load generators shared by the benchmark sections: wrk for HTTP, asyncio clients for WebSocket.

Every loop here is bounded in count and time, and talks only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import websockets

from bench import redis_server as _redis_server

ROOT = Path(__file__).resolve().parent.parent
#: The sections' free port (bench/interface.py, bench/stack.py): one definition, shared with the tests.
free_port = _redis_server.free_port


@contextlib.contextmanager
def serve(cmd: list[str], env: dict[str, str] | None = None, ready_url: str | None = None,
            root: Path = ROOT) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in ``root``, wait for ``ready_url``, and always stop it by pid (TERM, then KILL)."""
    full_env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if ready_url:
            try:
                wait_http(ready_url, timeout=40)
            except RuntimeError:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-3000:])
                raise
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on 127.0.0.1 (no persistence); yields its ``redis://`` URL.

    Raises RuntimeError (``RedisServerError``) when it does not answer PING within 10 s;
    always stopped by pid. The starter itself is ``bench.redis_server``, shared with the tests.
    """
    with _redis_server.redis_server(prefix="bench-redis-") as server:
        yield server.url


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s: {last}")


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class HttpResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_latency(output: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    return float(match.group(1)) * _UNIT_MS[match.group(2)] if match else float("nan")


def run_wrk(url: str, seconds: int = 5, connections: int = 32, threads: int = 1) -> HttpResult:
    """Drive ``url`` with wrk for ``seconds`` and parse requests/s and latency percentiles."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = 0
    for match in re.finditer(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups() if g)
    return HttpResult(float(rps.group(1)) if rps else 0.0, _wrk_latency(out, "50"), _wrk_latency(out, "99"), errors)


@dataclass
class EchoResult:
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    lost: int
    #: Wall time for all the clients to open their sockets at once (not in msgs_per_s).
    connect_ms: float = 0.0


async def _echo_client(ws, messages: int, rtts: list[float], timeout: float = 60.0) -> int:
    """Sequential round trips on ``ws``; returns how many were lost (no reply, or a wrong one).

    One deadline for the whole loop, not one per message: a timer per message made the
    client the heaviest process on the machine, and on 2 cores the client's CPU is taken
    from the server under test (real clients run elsewhere). A reply that never comes
    ends the loop at the deadline; what did not come back counts as lost.
    """
    done = wrong = 0
    try:
        async with asyncio.timeout(timeout):
            for i in range(messages):
                payload = f"echo {i}"
                started = time.perf_counter()
                await ws.send(payload)
                reply = await ws.recv()
                rtts.append(time.perf_counter() - started)
                done += 1
                wrong += reply != payload
    except TimeoutError:
        pass
    return wrong + messages - done


def ws_echo(url: str, clients: int, messages_per_client: int) -> EchoResult:
    """``clients`` sockets each doing ``messages_per_client`` sequential round trips.

    Every socket is opened first (timed on its own: ``connect_ms``); messages/s counts
    only the round trips, from the first send to the last reply, so a short run does
    not measure handshakes instead of messages.
    """

    async def main() -> EchoResult:
        rtts: list[float] = []
        sockets = []
        try:
            opened = time.perf_counter()
            attempts = await asyncio.wait_for(asyncio.gather(
                *(websockets.connect(url, max_size=2**22, open_timeout=10) for _ in range(clients)),
                return_exceptions=True), timeout=60)
            connect_ms = (time.perf_counter() - opened) * 1000
            sockets = [ws for ws in attempts if not isinstance(ws, BaseException)]  # closed below, always
            failed = [exc for exc in attempts if isinstance(exc, BaseException)]
            if failed:
                raise RuntimeError(f"{len(failed)} of {clients} WebSocket connects failed: {failed[0]!r}")
            started = time.perf_counter()
            losses = await asyncio.wait_for(
                asyncio.gather(*(_echo_client(ws, messages_per_client, rtts) for ws in sockets)), timeout=120
            )
            elapsed = time.perf_counter() - started
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return EchoResult(len(rtts) / elapsed, percentile(rtts, 0.5) * 1000, percentile(rtts, 0.99) * 1000,
                          sum(losses), connect_ms)

    return asyncio.run(main())


@dataclass
class BroadcastResult:
    deliveries_per_s: float
    expected: int
    lost: int


def ws_broadcast(url: str, clients: int, messages: int) -> BroadcastResult:
    """``clients`` sockets in one room; one of them sends ``messages``; time until all arrive."""

    async def listener(ws, received: list[int], done: asyncio.Event) -> None:
        count = 0
        try:
            while count < messages:
                await asyncio.wait_for(ws.recv(), timeout=15)
                count += 1
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        received.append(count)

    async def main() -> BroadcastResult:
        sockets = []
        try:
            for _ in range(clients):
                sockets.append(await websockets.connect(url, open_timeout=15, max_queue=None))
            await asyncio.sleep(0.5)  # let every group_add land before the first send
            received: list[int] = []
            done = asyncio.Event()
            tasks = [asyncio.create_task(listener(ws, received, done)) for ws in sockets]
            started = time.perf_counter()
            for i in range(messages):
                await sockets[0].send(f"broadcast {i}")
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
            elapsed = time.perf_counter() - started
            got = sum(received)
            expected = clients * messages
            # Deliveries/s counts what arrived; waiting for the slowest socket is part of the time.
            return BroadcastResult(got / elapsed, expected, expected - got)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    return asyncio.run(main())


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
