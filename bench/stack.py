"""Whole-stack benchmark: shmchannels (master, 1 interface + 2 workers, shm layer) beside
gunicorn sync, daphne 4 and gunicorn + uvicorn workers (Channels 4 + channels_redis).

The peers live in their own virtualenv (``.bench/peers``, made on first use) so their
``channels`` 4 package never meets ours. Every server is started here, on a free port on
127.0.0.1, and stopped by pid; every load loop is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import _load

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".bench" / "peers"
PEER_PACKAGES = [
    "django>=5.2,<6", "channels>=4,<5", "daphne>=4", "channels_redis>=4",
    "uvicorn>=0.30", "uvicorn-worker", "gunicorn", "wsproto",
]
HTTP_SECONDS = 5
ECHO_PLAN = [(1, 2000), (50, 60)]  # (clients, round trips per client)
BROADCAST_PLAN = [(50, 50), (500, 20)]  # (clients, messages) — below the per-socket capacity of 100


def ensure_peers() -> Path:
    """Create the peers' virtualenv once; return its bin directory."""
    stamp = PEERS / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", *PEER_PACKAGES], check=True)
        stamp.touch()
    return PEERS / "bin"


def peer_root() -> Path:
    """A directory holding only a ``bench`` link: the peers' import root.

    With the repository itself on PYTHONPATH our Channels 1.x ``channels`` package would
    shadow the peers' Channels 4 (daphne then fails to import ``channels.generic.websocket``).
    """
    root = ROOT / ".bench" / "peer-root"
    root.mkdir(parents=True, exist_ok=True)
    link = root / "bench"
    if not link.exists():
        link.symlink_to(ROOT / "bench", target_is_directory=True)
    return root


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds used so far by every live process of group ``pgid``.

    Each server runs in its own session (``start_new_session``), so its group is the
    whole server: master, interfaces, workers. Sampled around a load run, it gives CPU
    per request, which a busy shared machine disturbs far less than requests/s.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # fields[2] is the process group (field 5 of stat)
            total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    return total / tick


@dataclass
class CpuCost:
    us_per_request: float


def measure_servers() -> dict[str, dict[str, object]]:
    """Start each server in turn and run the scenarios it supports."""
    peers = ensure_peers()
    results: dict[str, dict[str, object]] = {}
    with _load.redis_server() as redis_url:
        segment = f"shmchannels-bench-{os.getpid()}"
        servers = [
            ("shmchannels", [str(ROOT / ".venv" / "bin" / "shmchannels"), "--interfaces", "1", "-w", "2", "--log-level", "warning",
                             "-b", "127.0.0.1:{port}", "bench.sites.shm_site.settings"], {"BENCH_SEGMENT": segment}, True),
            ("gunicorn sync (2 workers)", [str(peers / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}",
                                           "bench.sites.peer_site.wsgi:application"], {}, False),
            ("daphne 4", [str(peers / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "bench.sites.peer_site.asgi:application"],
             {"BENCH_REDIS_URL": redis_url}, True),
            ("gunicorn + 2 uvicorn workers", [str(peers / "gunicorn"), "-w", "2", "-k", "uvicorn_worker.UvicornWorker",
                                              "-b", "127.0.0.1:{port}", "bench.sites.peer_site.asgi:application"],
             {"BENCH_REDIS_URL": redis_url}, True),
        ]
        for name, template, env, websockets_too in servers:
            port = _load.free_port()
            cmd = [part.replace("{port}", str(port)) for part in template]
            base = f"127.0.0.1:{port}"
            row: dict[str, object] = {}
            print(f"   measuring {name}", file=sys.stderr, flush=True)
            try:
                with _load.serve(cmd, env, ready_url=f"http://{base}/", root=ROOT if name == "shmchannels" else peer_root()) as proc:
                    used = group_cpu_seconds(proc.pid)
                    http = row["http"] = _load.run_wrk(f"http://{base}/", seconds=HTTP_SECONDS)
                    used = group_cpu_seconds(proc.pid) - used
                    served = http.rps * HTTP_SECONDS
                    row["cpu"] = CpuCost(used / served * 1e6 if served else float("nan"))
                    if websockets_too:
                        for clients, count in ECHO_PLAN:
                            row[f"echo{clients}"] = _load.ws_echo(f"ws://{base}/echo/", clients, count)
                        for clients, count in BROADCAST_PLAN:
                            row[f"broadcast{clients}"] = _load.ws_broadcast(f"ws://{base}/room/", clients, count)
            except Exception as exc:  # report the failure in the table rather than losing the run
                row["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                if name == "shmchannels":
                    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "shmlayer", "unlink", segment],
                                   cwd=ROOT, capture_output=True)
            results[name] = row
    return results


def _fmt(value: float, digits: int = 0) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"


def render(results: dict[str, dict[str, object]]) -> str:
    names = list(results)
    ours = results.get("shmchannels", {})
    lines = ["## Whole stack: shmchannels vs gunicorn, daphne 4, uvicorn (Channels 4 + channels_redis)\n",
             f"HTTP: the same plain Django view, wrk 1 thread × 32 connections × {HTTP_SECONDS} s. "
             "WebSocket: one asyncio client process (the `websockets` library); echo = sequential round trips "
             "per client; broadcast = one client sends, every client in the room must receive every message. "
             "Server CPU per request = CPU time of all the server's processes during the wrk run ÷ requests "
             "served: on a shared or busy machine it moves far less than requests/s.\n"]
    header = "| scenario | " + " | ".join(names) + " | shmchannels ÷ best peer |"
    lines += [header, "|" + "---|" * (len(names) + 2)]

    def row(label: str, key: str, metric: str, digits: int = 0, higher_is_better: bool = True) -> None:
        cells, peer_values = [], []
        for name in names:
            res = results[name].get(key)
            value = getattr(res, metric) if res is not None else float("nan")
            cells.append(_fmt(value, digits))
            if name != "shmchannels" and value == value:
                peer_values.append(value)
        mine = getattr(ours.get(key), metric) if ours.get(key) is not None else float("nan")
        if peer_values and mine == mine:
            best = max(peer_values) if higher_is_better else min(peer_values)
            ratio = f"{mine / best:.2f}×" if best else "–"
        else:
            ratio = "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")

    row("HTTP requests/s", "http", "rps")
    row("HTTP p50 ms", "http", "p50_ms", 2, False)
    row("HTTP p99 ms", "http", "p99_ms", 2, False)
    row("HTTP errors", "http", "errors")
    row("HTTP server CPU µs per request", "cpu", "us_per_request", 0, False)
    for clients, _ in ECHO_PLAN:
        row(f"WS echo msgs/s, {clients} client(s)", f"echo{clients}", "msgs_per_s")
        row(f"WS echo p50 ms, {clients} client(s)", f"echo{clients}", "p50_ms", 2, False)
        row(f"WS echo p99 ms, {clients} client(s)", f"echo{clients}", "p99_ms", 2, False)
    for clients, _ in BROADCAST_PLAN:
        row(f"broadcast deliveries/s, {clients} clients", f"broadcast{clients}", "deliveries_per_s")
        row(f"broadcast lost, {clients} clients", f"broadcast{clients}", "lost", 0, False)
    errors = [f"- {name}: {res['error']}" for name, res in results.items() if "error" in res]
    if errors:
        lines += ["", "Errors during the run:", *errors]
    return "\n".join(lines) + "\n"


def run() -> str:
    return render(measure_servers())


if __name__ == "__main__":
    print(run())
