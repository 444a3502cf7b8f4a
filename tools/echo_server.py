"""An interface server plus an echo consumer in one process (Autobahn and benchmarks).

``python tools/echo_server.py PORT [--layer inmemory|shm] [--max-message-size N]``
accepts every WebSocket, echoes every text and binary message unchanged (empty ones
too), and answers every HTTP request with ``200 ok``. The consumer is an asyncio task
on the same loop, reading the same layer as a worker would.

With the shm layer the two halves can run as separate processes, as under the master:
``--role interface --shm-name N`` in one and ``--role consumer --shm-name N`` in another,
or ``--role pair``: the interface starts the consumer as its child, in the same session,
as the master does (the scheduler groups a session's processes: ``sched_yield`` only
yields to processes of the same group).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from channels._retry import retry_while_full  # noqa: E402
from interface import InterfaceServer, Options  # noqa: E402

CHANNELS = ["http.request", "websocket.connect", "websocket.receive", "websocket.disconnect"]
#: Seconds a reply waits for room on a full reply channel before it is dropped (its
#: client is gone or stuck; waiting longer would stall every other reply).
REPLY_RETRY_FOR = 5.0

log = logging.getLogger("echo_server")


async def echo_consumer(layer: object) -> None:
    """Reply to everything the interface sends, as a minimal worker would."""
    while True:
        channel, message = await layer.receive_async(CHANNELS, timeout=1.0)  # type: ignore[attr-defined]
        if channel is None:
            continue
        await reply(layer, channel, message)


def run_blocking_consumer(layer: object, parent: int | None = None) -> int:
    """The consumer role: a blocking receive loop, as a real worker process runs one.

    Blocking receive spins briefly before sleeping, so a worker answering a stream of
    messages is not woken from sleep for each of them (asyncio waiting always sleeps).
    """
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    while not stopping:
        channel, message = layer.receive(CHANNELS, block=True)  # type: ignore[attr-defined]
        if channel is None:
            if parent is not None and os.getppid() != parent:
                break  # the pair's interface is gone (killed): do not outlive it
            continue
        out = answer(channel, message)
        if out is None:
            continue
        target = message["reply_channel"]
        if not retry_while_full(lambda: layer.send(target, out), layer.ChannelFull,  # type: ignore[attr-defined]
                                time.monotonic() + REPLY_RETRY_FOR, 0.005, 0.05):
            log.warning("reply channel %s stayed full for %ss: reply dropped", target, REPLY_RETRY_FOR)
    layer.close()  # type: ignore[attr-defined]
    return 0


def answer(channel: str, message: dict) -> dict | None:
    """The echo application: the reply to one message, or None."""
    if channel == "http.request":
        return {"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": b"ok"}
    if channel == "websocket.connect":
        return {"accept": True}
    if channel == "websocket.receive":
        return {"text": message["text"]} if message.get("text") is not None else {"bytes": message["bytes"]}
    return None


async def reply(layer: object, channel: str, message: dict, retry_for: float = REPLY_RETRY_FOR) -> bool:
    """Send the echo application's answer to ``message``, waiting out ChannelFull.

    Returns:
        False if the reply channel stayed full for ``retry_for`` seconds (reply dropped).
    """
    out = answer(channel, message)
    if out is None:
        return True
    deadline = time.monotonic() + retry_for
    while True:
        try:
            layer.send(message["reply_channel"], out)  # type: ignore[attr-defined]
            return True
        except layer.ChannelFull:  # type: ignore[attr-defined]
            if time.monotonic() >= deadline:
                log.warning("reply channel %s stayed full for %ss: reply dropped", message["reply_channel"], retry_for)
                return False
            await asyncio.sleep(0.005)


def make_layer(kind: str, max_message_size: int, shm_name: str | None = None) -> object:
    if kind == "shm":
        from shmlayer import ShmChannelLayer
        return ShmChannelLayer(name=shm_name or f"echo{os.getpid()}", max_message_size=max_message_size,
                               capacity=1000)
    from channels.layers.inmemory import InMemoryChannelLayer
    return InMemoryChannelLayer(capacity=1000, max_message_size=max_message_size)


async def main_async(args: argparse.Namespace) -> int:
    layer = make_layer(args.layer, args.max_message_size + 65536, args.shm_name)
    sock = socket.create_server(("127.0.0.1", args.port), backlog=2048, reuse_port=False)
    options = Options(websocket_max_message_size=args.max_message_size, access_log=args.access_log)
    server = InterfaceServer(layer, [sock], options)
    consumers = [asyncio.get_running_loop().create_task(echo_consumer(layer))
                 for _ in range(2 if args.role == "both" else 0)]
    try:
        return await server.serve()
    finally:
        for task in consumers:
            task.cancel()
        if args.layer == "shm":
            layer.unlink()  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--layer", choices=["inmemory", "shm"], default="inmemory")
    parser.add_argument("--max-message-size", type=int, default=16 * 1024 * 1024 + 1024)
    parser.add_argument("--access-log", default=None)
    parser.add_argument("--role", choices=["both", "interface", "consumer", "pair"], default="both")
    parser.add_argument("--shm-name", default=None, help="shm segment name shared by the two roles")
    parser.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)  # set by --role pair
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "consumer":
        return run_blocking_consumer(make_layer(args.layer, args.max_message_size + 65536, args.shm_name), args.parent)
    if args.role == "pair":
        return run_pair(args)
    return asyncio.run(main_async(args))


def run_pair(args: argparse.Namespace) -> int:
    """The interface here, the blocking consumer as a child process in this session."""
    if args.layer != "shm":
        raise SystemExit("--role pair needs --layer shm")
    args.shm_name = args.shm_name or f"echo{os.getpid()}"
    consumer = subprocess.Popen([sys.executable, os.path.abspath(__file__), "0", "--layer", "shm",
                                 "--shm-name", args.shm_name, "--role", "consumer", "--parent", str(os.getpid()),
                                 "--max-message-size", str(args.max_message_size)])
    try:
        return asyncio.run(main_async(args))
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=5)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()


if __name__ == "__main__":
    sys.exit(main())
