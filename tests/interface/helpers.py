"""Shared helpers for the interface tests: a fake clock, core builders, response parsing."""

from __future__ import annotations

from typing import Any

import h11

from interface._effects import AccessRecord, ConnInfo, LayerSend, Upgrade
from interface._http import HTTPConnection
from interface._options import Options

PREFIX = "interface.TEST!7"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def info(client: tuple[str, int] | None = ("127.0.0.1", 5555)) -> ConnInfo:
    return ConnInfo(client=client, server=("127.0.0.1", 8000), reply_prefix=PREFIX)


def http_core(clock: FakeClock | None = None, client: tuple[str, int] | None = ("127.0.0.1", 5555),
              **options: Any) -> tuple[HTTPConnection, FakeClock]:
    clock = clock or FakeClock()
    return HTTPConnection(info(client), Options(**options), clock=clock), clock


def split_effects(effects: list[Any]) -> tuple[list[LayerSend], list[AccessRecord], list[Upgrade]]:
    sends = [e for e in effects if isinstance(e, LayerSend)]
    records = [e for e in effects if isinstance(e, AccessRecord)]
    upgrades = [e for e in effects if isinstance(e, Upgrade)]
    return sends, records, upgrades


def sends_of(core: Any) -> list[LayerSend]:
    return split_effects(core.pop_effects())[0]


def parse_responses(data: bytes, methods: list[bytes] | None = None) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Parse the server's bytes with an h11 client; one entry per complete response."""
    methods = methods or [b"GET"] * 16
    client = h11.Connection(h11.CLIENT)
    responses: list[tuple[int, dict[bytes, bytes], bytes]] = []
    client.receive_data(data)
    for method in methods:
        if client.our_state is h11.DONE or client.our_state is h11.MUST_CLOSE:
            if client.their_state is h11.DONE:
                client.start_next_cycle()
            else:
                break
        client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return responses
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                responses.append((status, headers, body))
                break
        if client.their_state is h11.MUST_CLOSE:
            break
    return responses


def request(method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None,
            body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: example.com"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
