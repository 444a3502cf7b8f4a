"""Transport tests: a real interface server on 127.0.0.1, the in-memory layer, a consumer
thread, and real clients (the ``websockets`` library, raw sockets, http.client)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from channels.layers.inmemory import InMemoryChannelLayer
from interface import InterfaceServer, Options
from interface._options import BODY_CHUNK_SIZE

from .echo_app import EchoConsumer
from .helpers import parse_responses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Running:
    """An interface server in a thread with its own event loop."""

    def __init__(self, layer: Any, options: Options) -> None:
        self.layer = layer
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.sock.getsockname()[1]
        self.server = InterfaceServer(layer, [self.sock], options, booted=self._booted)
        self._ready = threading.Event()
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self._ready.wait(10), "server did not boot"

    def _booted(self, prefix: str) -> None:
        self.prefix = prefix
        self._ready.set()

    def _run(self) -> None:
        self.exit_code = asyncio.run(self.server.serve(signal_handlers=False))

    def stop(self, graceful: bool = False) -> None:
        self.server.stop(graceful)
        self.thread.join(15)
        assert not self.thread.is_alive()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[tuple[Running, EchoConsumer | None]] = []

    def start(options: Options | None = None, layer: Any = None, consumer: bool = True,
              channels: list[str] | None = None) -> tuple[Running, EchoConsumer | None]:
        layer = layer or InMemoryChannelLayer()
        running = Running(layer, options or Options())
        echo = EchoConsumer(layer, channels).start() if consumer else None
        started.append((running, echo))
        return running, echo

    yield start
    for running, echo in started:
        running.stop()
        if echo is not None:
            echo.stop()


def raw(port: int, data: bytes, timeout: float = 5.0, shut: bool = False) -> bytes:
    """Send bytes, read until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return raw_until_closed(sock, timeout)


def raw_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes ``sock`` (or timeout)."""
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (a hard deadline, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_http_get_and_streaming_response(serve):
    running, _ = serve()
    assert get(running.port, "/hello") == (200, b"ok /hello")
    assert get(running.port, "/stream") == (200, b"one two three")


def test_keep_alive_and_pipelining_answer_in_order(serve):
    running, echo = serve()
    requests = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    last = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = raw(running.port, requests + last)
    bodies = [r[2] for r in parse_responses(data)]
    assert bodies == [b"ok /p%d" % i for i in range(5)] + [b"ok /last"]
    channels = [m["reply_channel"] for m in echo.requests]
    assert len(set(channels)) == 6  # a new reply channel per request
    assert all(c.startswith(running.prefix) for c in channels)


def test_two_mib_upload_through_body_channel(serve):
    running, _ = serve()
    payload = os.urandom(2 * 1024 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=20)
    conn.request("POST", "/body", body=payload, headers={"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    length, digest, chunks = response.read().decode().split()
    conn.close()
    assert response.status == 200
    assert (int(length), digest) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert int(chunks) >= 3  # 512 KiB in http.request, the rest through body_channel


def test_upload_backpressure_with_a_one_message_body_channel(serve):
    # Capacity 1 on body channels: every chunk waits (ChannelFull, retried) until the
    # consumer took the one before; the upload still arrives whole and in order.
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    running, _ = serve(layer=layer)
    payload = os.urandom(3 * 1024 * 1024 + 5)
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=20)
    conn.request("POST", "/body", body=payload)
    length, digest, chunks = conn.getresponse().read().decode().split()
    conn.close()
    assert (int(length), digest, int(chunks)) == (len(payload), hashlib.sha256(payload).hexdigest(), 6)


def test_a_closed_marker_meeting_a_full_body_channel_is_dropped_alone(serve):
    # Body channels hold one chunk and nobody reads them. The client goes quiet mid-upload
    # while a chunk waits for room: the idle timeout answers 408 and queues the body
    # channel's closed marker and http.disconnect (both DROP) behind the waiting chunk.
    # Once the application takes a chunk, the waiting one goes in, the marker meets a
    # full channel and is dropped alone: the http.disconnect still arrives, after the body.
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    running, _ = serve(Options(http_idle_timeout=1.0), layer=layer, consumer=False)
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(b"POST /silent HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (4 * BODY_CHUNK_SIZE))
        # The request's own chunk, one in the body channel, one waiting for room.
        sock.sendall(b"x" * (3 * BODY_CHUNK_SIZE + 10))
        assert raw_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    channel, request = layer.receive(["http.request"])
    assert channel == "http.request" and request["path"] == "/silent"
    assert layer.receive(["http.disconnect"]) == (None, None)  # never ahead of the body
    body = request["body_channel"]
    assert layer.receive([body])[1] == {"content": b"x" * BODY_CHUNK_SIZE, "closed": False, "more_content": True}
    wait_until(lambda: layer.channel_statistics("http.disconnect")["messages_pending"] == 1)
    assert layer.receive(["http.disconnect"])[1] == {"reply_channel": request["reply_channel"], "path": "/silent"}
    assert layer.receive([body])[1] == {"content": b"x" * BODY_CHUNK_SIZE, "closed": False, "more_content": True}
    assert layer.receive([body]) == (None, None)  # the closed marker met a full channel


def test_body_chunks_still_waiting_are_dropped_once_the_application_answers(serve):
    # The application answers without reading the upload: the chunk waiting for room in
    # its body channel is forgotten at once, not retried for http_timeout after the response.
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    running, _ = serve(layer=layer, consumer=False)
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (4 * BODY_CHUNK_SIZE))
        sock.sendall(b"x" * (3 * BODY_CHUNK_SIZE + 10))  # one chunk in the request, one in the channel, one waiting
        wait_until(lambda: layer.channel_statistics("http.request")["messages_pending"] == 1)
        _, request = layer.receive(["http.request"])
        body = request["body_channel"]
        wait_until(lambda: layer.channel_statistics(body)["messages_pending"] == 1)
        time.sleep(0.1)  # the third chunk is waiting for room now
        layer.send(request["reply_channel"], {"status": 413, "content": b"no thanks"})
        assert raw_until_closed(sock).startswith(b"HTTP/1.1 413 ")
    assert layer.receive([body])[1]["content"] == b"x" * BODY_CHUNK_SIZE  # room for a retry now...
    time.sleep(0.3)
    assert layer.receive([body]) == (None, None)  # ...but the waiting chunk was forgotten


def test_chunked_upload_with_expect_continue(serve):
    running, _ = serve()
    head = (b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if data.startswith(b"HTTP/1.1 100 "):
        data = data.split(b"\r\n\r\n", 1)[1]
    body = parse_responses(data, [b"POST"])[0][2]
    assert body.startswith(b"5 " + hashlib.sha256(b"hello").hexdigest().encode())


def test_websocket_echo_order_and_close_codes(serve):
    running, echo = serve()
    with ws_connect(f"ws://127.0.0.1:{running.port}/chat?room=1") as ws:
        for message in ["hello", "", b"\x00\xff", b"", "é" * 1000]:
            ws.send(message)
            assert ws.recv(timeout=5) == message
        ws.close(4321)
    deadline = time.monotonic() + 5
    while not echo.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    (connect,) = echo.connects
    assert connect["path"] == "/chat" and connect["query_string"] == b"room=1" and connect["order"] == 0
    (disconnect,) = echo.disconnects
    assert disconnect["code"] == 4321 and disconnect["order"] == 6
    assert disconnect["reply_channel"] == connect["reply_channel"]


def test_websocket_rejection_and_close_from_application(serve):
    running, _ = serve()
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{running.port}/reject").close()
    assert info.value.response.status_code == 403
    with ws_connect(f"ws://127.0.0.1:{running.port}/closeme") as ws:
        assert ws.recv(timeout=5) == "bye"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4000


def test_websocket_connect_timeout_is_403(serve):
    running, _ = serve(Options(websocket_connect_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{running.port}/nowait", open_timeout=5).close()
    # well before the 5 s default: the configured 0.5 s applied
    assert info.value.response.status_code == 403 and time.monotonic() - started < 4.5


def test_two_hundred_concurrent_websockets(serve):
    running, echo = serve(layer=InMemoryChannelLayer(capacity=1000))

    async def client(i: int) -> str:
        async with websockets.connect(f"ws://127.0.0.1:{running.port}/c{i}", open_timeout=20) as ws:
            await ws.send(f"message {i}")
            return await asyncio.wait_for(ws.recv(), 20)  # type: ignore[return-value]

    async def main() -> list[str]:
        return await asyncio.gather(*(client(i) for i in range(200)))

    assert asyncio.run(main()) == [f"message {i}" for i in range(200)]
    deadline = time.monotonic() + 5
    while len(echo.disconnects) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len({d["reply_channel"] for d in echo.disconnects}) == 200


def test_slowloris_is_cut_by_the_header_timeout(serve):
    running, _ = serve(Options(header_timeout=1))
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        data = b""
        for i in range(80):  # dribble a header line every 100 ms
            try:
                sock.sendall(b"X-%d: y\r\n" % i)
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                data += sock.recv(65536)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            if data:
                break
        assert data.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 8  # the 10 s default did not apply


def test_half_sent_upgrade_is_closed(serve):
    running, echo = serve(Options(header_timeout=0.5))
    start = time.monotonic()
    data = raw(running.port, b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
               timeout=9)
    assert data.startswith(b"HTTP/1.1 408 ") and time.monotonic() - start < 8
    assert echo.connects == []


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
])
def test_malformed_and_huge_requests(serve, request_bytes, status):
    running, _ = serve()
    data = raw(running.port, request_bytes)
    assert data.startswith(b"HTTP/1.1 %d " % status)


def test_http_timeout_answers_503(serve):
    running, echo = serve(Options(http_timeout=0.5))
    status, body = get(running.port, "/silent")
    assert status == 503 and b"failed to respond" in body


def test_client_leaving_a_long_poll_sends_http_disconnect(serve):
    running, echo = serve()
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    sock.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: len(echo.requests) == 1)
    sock.close()
    wait_until(lambda: len(echo.http_disconnects) == 1)
    assert echo.http_disconnects[0] == {"reply_channel": echo.requests[0]["reply_channel"], "path": "/silent"}


def test_websocket_lifetime_closes_with_1000(serve):
    running, echo = serve(Options(websocket_timeout=0.5))
    with ws_connect(f"ws://127.0.0.1:{running.port}/short") as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1000
    wait_until(lambda: len(echo.disconnects) == 1)
    assert echo.disconnects[0]["code"] == 1000


def test_channel_full_on_http_request_is_503(serve):
    layer = InMemoryChannelLayer(capacity=1)
    running, _ = serve(layer=layer, consumer=False)
    first = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    first.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    # http.request is now full (capacity 1; nobody reads)
    wait_until(lambda: layer.channel_statistics("http.request")["messages_pending"] == 1)
    status, body = get(running.port, "/second")
    first.close()
    assert (status, body) == (503, b"Request queue full.\n")


def test_channel_full_on_websocket_connect_is_503(serve):
    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    running, _ = serve(layer=layer, consumer=False, options=Options(websocket_connect_timeout=5))
    first = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    first.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    wait_until(lambda: layer.channel_statistics("websocket.connect")["messages_pending"] == 1)
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{running.port}/b").close()
    first.close()
    assert info.value.response.status_code == 503


def test_channel_full_on_websocket_receive_closes_1013(serve):
    # The consumer accepts connections but never reads websocket.receive (capacity 2).
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 2})
    running, echo = serve(layer=layer, channels=["websocket.connect"])
    with ws_connect(f"ws://127.0.0.1:{running.port}/flood") as ws:
        for i in range(3):
            ws.send(f"m{i}")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1013


class SendFailsLayer(InMemoryChannelLayer):
    """The in-memory layer whose ``send`` to one channel raises ``error`` (counted)."""

    def __init__(self, channel: str, error: Exception) -> None:
        super().__init__()
        self.failing = channel
        self.error = error
        self.attempts = 0

    def send(self, channel: str, message: dict[str, Any]) -> None:
        if channel == self.failing:
            self.attempts += 1
            raise self.error
        super().send(channel, message)


@pytest.mark.parametrize("error, close_code, retried, http_answer", [
    # A bug or an unencodable message: retrying cannot help, so no retry, one refusal that
    # says it is an internal error (500 / 1011), not a full channel.
    pytest.param(TypeError("cannot serialize"), 1011, False, (500, b"Internal Server Error\n"),
                 id="other-error-refused-at-once"),
    # ConnectionError (Redis down) may pass: websocket.receive is retried like a full channel.
    pytest.param(ConnectionError("Redis is unreachable"), 1013, True, (503, b"Request queue full.\n"),
                 id="unreachable-layer-retried-like-full"),
])
def test_what_a_layer_send_error_does(serve, error, close_code, retried, http_answer):
    ws_layer = SendFailsLayer("websocket.receive", error)
    running, _ = serve(layer=ws_layer, channels=["websocket.connect"])
    with ws_connect(f"ws://127.0.0.1:{running.port}/x") as ws:
        ws.send("m")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == close_code
    if retried:
        assert ws_layer.attempts > 1
    else:
        assert ws_layer.attempts == 1
    # http.request is never retried (asgi1.md §5: refused at once), whatever the error.
    http_layer = SendFailsLayer("http.request", error)
    running, _ = serve(layer=http_layer, consumer=False)
    assert get(running.port, "/x") == http_answer
    assert http_layer.attempts == 1


def test_proxy_headers_and_root_path_reach_the_application(serve):
    running, _ = serve(Options(proxy_headers=True, root_path="/app"))
    status, body = get(running.port, "/scope", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https",
                                                "X-Forwarded-Port": "443"})
    scope = json.loads(body)
    assert scope["client"] == ["198.51.100.7", 443] and scope["scheme"] == "https" and scope["root_path"] == "/app"


def test_access_log_has_http_and_websocket_lines(serve, tmp_path):
    log_path = tmp_path / "access.log"
    running, echo = serve(Options(access_log=str(log_path)))
    get(running.port, "/logged")
    with ws_connect(f"ws://127.0.0.1:{running.port}/wslog") as ws:
        ws.send("x")
        ws.recv(timeout=5)
    wait_until(lambda: "WSDISCONNECT" in log_path.read_text())
    text = log_path.read_text()
    assert '"GET /logged" 200 10' in text
    for verb in ("WSCONNECTING", "WSCONNECT", "WSDISCONNECT"):
        assert f'"{verb} /wslog" - -' in text


def test_max_connections_pauses_accepting(serve):
    running, _ = serve(Options(max_connections=2))
    a = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    b = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    wait_until(lambda: len(running.server.connections) == 2)
    c = socket.create_connection(("127.0.0.1", running.port), timeout=5)  # sits in the backlog
    time.sleep(0.2)
    assert len(running.server.connections) == 2
    a.close()
    c.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    assert data.endswith(b"ok /third")
    b.close()
    c.close()


def _spawn(*args: str, preexec_fn: Any = None) -> tuple[subprocess.Popen[bytes], int, str, str]:
    port_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"iface-{os.getpid()}-{time.monotonic_ns()}")
    proc = subprocess.Popen([sys.executable, "-m", "tests.interface.echo_app", "--port-file", port_file, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)
    deadline = time.monotonic() + 20
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"echo app did not start: {err.decode()[-2000:]}")
        time.sleep(0.05)
    port, prefix = open(port_file).read().split()
    os.unlink(port_file)
    return proc, int(port), prefix, port_file


def test_sigterm_drains_http_and_closes_websockets_1001():
    proc, port, _, _ = _spawn()
    try:
        with ws_connect(f"ws://127.0.0.1:{port}/drain") as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/slowstream/1")
            response = conn.getresponse()  # headers arrived: the request is in flight
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd.code == 1001
            assert (response.status, response.read()) == (200, b"started finished")
            conn.close()
            assert proc.wait(10) == 0
            with pytest.raises(OSError):  # no longer accepting
                socket.create_connection(("127.0.0.1", port), timeout=1).recv(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))


def test_accept_loop_survives_running_out_of_file_descriptors():
    proc, port, _, _ = _spawn(preexec_fn=_low_fd_limit)
    clients: list[socket.socket] = []
    try:
        for _ in range(80):  # more than the server has fds for: accept() fails with EMFILE
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        assert proc.poll() is None
        for sock in clients:
            sock.close()
        clients.clear()
        deadline = time.monotonic() + 10
        while True:  # once fds are free again the server serves as before
            try:
                assert get(port, "/after") == (200, b"ok /after")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        for sock in clients:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        _, err = proc.communicate()
    assert b"pausing accept for 100 ms" in err
