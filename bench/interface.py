"""Interface-server benchmark: shmchannels' interface beside uvicorn (h11 + wsproto).

Both serve the same trivial application: HTTP ``200 ok`` and a WebSocket echo.

- shmchannels: one interface process (``tools/echo_server.py --role pair``) and the
  consumer process it starts in its own session, as the master does (a blocking receive
  loop, what a worker does minus Django), on one shared-memory layer; every message
  crosses the layer twice.
- uvicorn: one process, ``--http h11 --ws wsproto --workers 1``, running :func:`app`
  below (an ASGI 3 app answering in-process, no layer at all).

HTTP load comes from wrk, WebSocket load from asyncio clients in this process
(``bench/_load.py``). On a small shared machine one run of each moves by ±30 % and
the CPUs speed up under sustained load, so both servers run side by side for the
whole section, get one unrecorded warm-up round, and are then measured ``ROUNDS``
times, alternately; the table shows the median of each column. Everything is
bounded; run alone it takes about a minute.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import _load

ROOT = Path(__file__).resolve().parent.parent
HTTP_SECONDS = 3
HTTP_CONNECTIONS = 50
ECHO_PLAN = [(1, 2000), (50, 200)]  # (clients, sequential round trips per client)
ROUNDS = 3


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The uvicorn peer: HTTP 200 "ok" and a WebSocket echo (ASGI 3)."""
    if scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif event["type"] == "websocket.receive":
                if event.get("text") is not None:
                    await send({"type": "websocket.send", "text": event["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": event["bytes"]})
            else:
                return
    elif scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


def _ensure_uvicorn() -> None:
    if importlib.util.find_spec("uvicorn") is None:
        # The "bench" extra of setup.py; `make bench` installs it.
        raise SystemExit("uvicorn is missing: run `make bench` (it installs the project's [bench] extra)")


@contextlib.contextmanager
def _shmchannels(port: int) -> Iterator[None]:
    # One session, as under the master: the interface starts the consumer as its child.
    # (Started apart, each would be its own scheduling group, and an interface's
    # sched_yield would never hand the core to the consumer it waits for.)
    cmd = [sys.executable, str(ROOT / "tools" / "echo_server.py"), str(port), "--layer", "shm",
           "--shm-name", f"benchif{os.getpid()}", "--role", "pair", "--max-message-size", "1000000"]
    # Ready once a request went through the layer and the consumer answered it.
    with _load.serve(cmd, ready_url=f"http://127.0.0.1:{port}/"):
        yield


@contextlib.contextmanager
def _uvicorn(port: int) -> Iterator[None]:
    cmd = [sys.executable, "-m", "uvicorn", "--http", "h11", "--ws", "wsproto", "--port", str(port),
           "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "bench.interface:app"]
    with _load.serve(cmd, ready_url=f"http://127.0.0.1:{port}/"):
        yield


def _measure(label: str, port: int) -> dict[str, Any]:
    http = _load.run_wrk(f"http://127.0.0.1:{port}/", seconds=HTTP_SECONDS, connections=HTTP_CONNECTIONS)
    echoes = [(clients, _load.ws_echo(f"ws://127.0.0.1:{port}/echo", clients, count))
              for clients, count in ECHO_PLAN]
    return {"label": label, "http": http, "echo": echoes}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose every number is the median of that number over ``runs``."""
    med = _load.median_of
    http = _load.HttpResult(med([r["http"].rps for r in runs]), med([r["http"].p50_ms for r in runs]),
                            med([r["http"].p99_ms for r in runs]), sum(r["http"].errors for r in runs))
    echoes = []
    for i, (clients, _count) in enumerate(ECHO_PLAN):
        samples = [r["echo"][i][1] for r in runs]
        echoes.append((clients, _load.EchoResult(med([e.msgs_per_s for e in samples]), med([e.p50_ms for e in samples]),
                                                 med([e.p99_ms for e in samples]), sum(e.lost for e in samples),
                                                 med([e.connect_ms for e in samples]))))
    return {"label": runs[0]["label"], "http": http, "echo": echoes}


def run() -> str:
    """Measure both servers ``ROUNDS`` times, alternately; return the BENCHMARKS.md section."""
    _ensure_uvicorn()
    servers = [("shmchannels interface + shm layer + consumer process", _shmchannels),
               ("uvicorn (h11, wsproto), in-process app", _uvicorn)]
    runs: list[list[dict[str, Any]]] = [[] for _ in servers]
    ports = [_load.free_port() for _ in servers]
    with contextlib.ExitStack() as stack:
        for (_, server), port in zip(servers, ports):
            stack.enter_context(server(port))
        # One unrecorded round first: this machine's CPUs speed up under sustained load
        # (per-message costs fell by a third within seconds), so no server is measured cold.
        for round_ in range(ROUNDS + 1):
            for i, ((label, _), port) in enumerate(zip(servers, ports)):
                result = _measure(label, port)
                if round_:
                    runs[i].append(result)
    results = [_median(r) for r in runs]
    ours, peer = results
    lines = [
        "## Interface server\n",
        "The protocol server alone, with a trivial application: shmchannels' interface process and a "
        "consumer process exchanging every message through the shared-memory layer (the consumer is the "
        "interface's child, one session as under the master), beside uvicorn "
        "(`--http h11 --ws wsproto`, one process) answering in-process. Same machine, same run. "
        f"HTTP: wrk, {HTTP_CONNECTIONS} connections, {HTTP_SECONDS} s. WebSocket: asyncio clients in the "
        "benchmark process doing sequential round trips (the client shares the 2 cores); every socket is "
        "opened first, and msg/s counts the round trips only (the last column: time for the "
        f"{ECHO_PLAN[-1][0]} sockets to open at once). Each number is the "
        f"median of {ROUNDS} runs after a warm-up round, the two servers (both running throughout) alternating; "
        "errors and losses are summed.\n",
        "| server | HTTP req/s | HTTP p50 / p99 ms | " + " | ".join(
            f"WS echo {c} client{'s' if c > 1 else ''}: msg/s, p50 / p99 ms" for c, _ in ECHO_PLAN)
        + f" | {ECHO_PLAN[-1][0]} WS handshakes, ms |",
        "|---|---|---|" + "---|" * (len(ECHO_PLAN) + 1),
    ]
    for result in results:
        http = result["http"]
        cells = [f"{result['label']}", f"{http.rps:,.0f}" + (f" ({http.errors} errors)" if http.errors else ""),
                 f"{http.p50_ms:.2f} / {http.p99_ms:.2f}"]
        for _, echo in result["echo"]:
            cells.append(f"{echo.msgs_per_s:,.0f}, {echo.p50_ms:.2f} / {echo.p99_ms:.2f}"
                         + (f" ({echo.lost} lost)" if echo.lost else ""))
        cells.append(f"{result['echo'][-1][1].connect_ms:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    ratio_http = ours["http"].rps / peer["http"].rps if peer["http"].rps else float("nan")
    ratios = ", ".join(f"{c} client(s) {o.msgs_per_s / p.msgs_per_s:.2f}x"
                       for (c, o), (_, p) in zip(ours["echo"], peer["echo"]) if p.msgs_per_s)
    lines.append("")
    lines.append(f"Ratio shmchannels / uvicorn: HTTP {ratio_http:.2f}x; WebSocket echo {ratios}. "
                 "uvicorn runs the application inside the protocol server; shmchannels pays two layer "
                 "hops and a second process per message, which is the price of workers that can be "
                 "restarted, scaled and deployed without dropping sockets.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
