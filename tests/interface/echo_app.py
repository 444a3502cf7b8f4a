"""A small consumer for transport tests: what a worker would do, on the same layer.

Used in-process (a thread beside an in-process interface server) and as a subprocess
(``python -m tests.interface.echo_app``) for signal and shared-memory tests.

HTTP paths:
    ``/body``     read the whole body (``body`` + ``body_channel`` chunks), answer its
                  length and sha256;
    ``/stream``   a response in three chunks;
    ``/slow/N``   answer after N seconds;
    ``/slowstream/N`` send the status and a first chunk now, the last chunk after N seconds;
    ``/silent``   never answer;
    ``/scope``    answer the request message's scope keys as JSON;
    anything else ``ok <path>``.
Every ``http.disconnect`` is recorded. WebSocket: ``/reject`` is refused, ``/nowait`` is never answered, ``/closeme`` is
accepted then closed with 4000; everything else is accepted and echoed; every
``websocket.disconnect`` is recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

CHANNELS = ["http.request", "http.disconnect", "websocket.connect", "websocket.receive", "websocket.disconnect"]


class EchoConsumer:
    """Runs in a thread; replies to everything the interface sends."""

    def __init__(self, layer: Any, channels: list[str] | None = None) -> None:
        self.layer = layer
        self.channels = channels or CHANNELS
        self.disconnects: list[dict[str, Any]] = []
        self.connects: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.http_disconnects: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._timers: list[threading.Timer] = []

    def start(self) -> EchoConsumer:
        self._thread.start()
        return self

    def stop(self, wait: bool = False) -> None:
        """Stop; the thread ends within a blocking receive (~1 s) unless ``wait``."""
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        if wait:
            self._thread.join(5)

    def send(self, channel: str, message: dict[str, Any]) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.layer.send(channel, message)
                return
            except self.layer.ChannelFull:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _run(self) -> None:
        while not self._stop.is_set():
            channel, message = self.layer.receive(self.channels, block=True)
            if channel is None:
                continue
            getattr(self, "on_" + channel.replace(".", "_"))(message)

    def on_http_request(self, message: dict[str, Any]) -> None:
        self.requests.append(message)
        path, reply = message["path"], message["reply_channel"]
        if path == "/body":
            body = bytearray(message["body"])
            channel = message.get("body_channel")
            chunks = 0
            while channel:
                got, chunk = self.layer.receive([channel], block=True)
                if got is None:
                    continue
                chunks += 1
                body += chunk.get("content", b"")
                if chunk.get("closed") or not chunk.get("more_content"):
                    break
            content = f"{len(body)} {hashlib.sha256(body).hexdigest()} {chunks}".encode()
            self.send(reply, {"status": 200, "content": content})
        elif path == "/stream":
            self.send(reply, {"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": b"one ",
                              "more_content": True})
            self.send(reply, {"content": b"two ", "more_content": True})
            self.send(reply, {"content": b"three", "more_content": False})
        elif path.startswith("/slow/"):
            timer = threading.Timer(float(path.split("/")[2]), self.send,
                                    (reply, {"status": 200, "content": b"slow done"}))
            self._timers.append(timer)
            timer.start()
        elif path.startswith("/slowstream/"):
            self.send(reply, {"status": 200, "content": b"started ", "more_content": True})
            timer = threading.Timer(float(path.split("/")[2]), self.send,
                                    (reply, {"content": b"finished", "more_content": False}))
            self._timers.append(timer)
            timer.start()
        elif path == "/silent":
            pass
        elif path == "/scope":
            keys = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in message.items()
                    if k in ("client", "server", "scheme", "root_path", "path", "query_string", "http_version")}
            self.send(reply, {"status": 200, "content": json.dumps(keys).encode()})
        else:
            self.send(reply, {"status": 200, "headers": [[b"content-type", b"text/plain"]],
                              "content": f"ok {path}".encode()})

    def on_http_disconnect(self, message: dict[str, Any]) -> None:
        self.http_disconnects.append(message)

    def on_websocket_connect(self, message: dict[str, Any]) -> None:
        self.connects.append(message)
        path = message["path"]
        if path == "/reject":
            self.send(message["reply_channel"], {"accept": False})
        elif path == "/closeme":
            self.send(message["reply_channel"], {"accept": True, "text": "bye", "close": 4000})
        elif path != "/nowait":
            self.send(message["reply_channel"], {"accept": True})

    def on_websocket_receive(self, message: dict[str, Any]) -> None:
        if message.get("text") is not None:
            self.send(message["reply_channel"], {"text": message["text"]})
        else:
            self.send(message["reply_channel"], {"bytes": message["bytes"]})

    def on_websocket_disconnect(self, message: dict[str, Any]) -> None:
        self.disconnects.append(message)


def main() -> int:
    """Subprocess mode: serve a socket with run_interface and this consumer in a thread."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--layer", choices=["inmemory", "shm"], default="inmemory")
    parser.add_argument("--shm-name", default=None)
    parser.add_argument("--no-consumer", action="store_true")
    parser.add_argument("--graceful-timeout", type=float, default=10)
    args = parser.parse_args()
    from interface import Options, run_interface

    if args.layer == "shm":
        from shmlayer import ShmChannelLayer
        layer: Any = ShmChannelLayer(name=args.shm_name)
    else:
        from channels.layers.inmemory import InMemoryChannelLayer
        layer = InMemoryChannelLayer()
    sock = socket.create_server(("127.0.0.1", 0), backlog=512)
    consumer = None if args.no_consumer else EchoConsumer(layer).start()

    def booted(prefix: str) -> None:
        with open(args.port_file + ".tmp", "w") as out:
            out.write(f"{sock.getsockname()[1]} {prefix}")
        os.replace(args.port_file + ".tmp", args.port_file)

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    code = run_interface(layer, [sock], Options(graceful_timeout=args.graceful_timeout), booted=booted)
    if consumer is not None:
        consumer.stop(wait=True)
    layer.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
