"""``shmchannels-interface``: run one interface server process, like daphne 1.x's command.

    shmchannels-interface [-b HOST] [-p PORT] [-u PATH] [--fd N] [--access-log FILE]
        [--proxy-headers] [--root-path P] [--http-timeout S] [--ping-interval S]
        [--ping-timeout S] [--websocket-timeout S] [--websocket-connect-timeout S]
        project.asgi:channel_layer

The positional argument names a channel layer object as ``module:attribute`` (the
module is imported with the current directory on ``sys.path``, as daphne did). Workers
run elsewhere (``manage.py runworker`` or the ``shmchannels`` master).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import socket
import stat
import sys
from typing import Any, Sequence

from gunicorn.util import parse_address

from ._options import Options
from .server import run_interface

__all__ = ["main", "load_layer", "make_sockets"]

log = logging.getLogger("interface")


class UsageError(Exception):
    """A command-line mistake: reported as one line, exit status 1."""


def load_layer(path: str) -> Any:
    """Import ``module:attribute`` and return the channel layer it names.

    A ``ChannelLayerWrapper`` (anything with a ``channel_layer`` attribute) is unwrapped.

    Raises:
        UsageError: a malformed path, a module that fails to import, or a missing attribute.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"channel layer must be given as module.path:attribute, not {path!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, ".")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}") from None
    layer = getattr(target, "channel_layer", target)
    if not hasattr(layer, "send") or not hasattr(layer, "receive_async"):
        raise UsageError(f"{path!r} is not a channel layer with the 'asyncio' extension (got {type(layer).__name__})")
    return layer


def make_sockets(host: str | None, port: int | None, unix_path: str | None, fds: Sequence[int]) -> list[socket.socket]:
    """Bind and listen on what the command line asked for (default 127.0.0.1:8000).

    ``host`` may also be a gunicorn-style address: ``HOST:PORT``, ``[V6]:PORT`` or
    ``unix:PATH`` (parsed by ``gunicorn.util.parse_address``).

    Raises:
        UsageError: a socket cannot be bound or an fd is not a listening socket.
    """
    unix_paths = [unix_path] if unix_path else []
    if host is not None and (host.startswith("unix:") or host.startswith("[") or host.count(":") == 1):
        parsed = parse_address(host)
        if isinstance(parsed, str):
            unix_paths.append(parsed)
            host = None
        else:
            host, port = parsed[0], port if port is not None else parsed[1]
    sockets: list[socket.socket] = []
    try:
        for fd in fds:
            sock = socket.socket(fileno=fd)
            if sock.type != socket.SOCK_STREAM:
                raise UsageError(f"--fd {fd} is not a stream socket")
            sockets.append(sock)
        for path in unix_paths:
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # a stale socket from a previous run
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(path)
            sock.listen(2048)
        if host is not None or port is not None or not sockets:
            address = (host or "127.0.0.1", 8000 if port is None else port)
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            sockets.append(socket.create_server(address, family=family, backlog=2048))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise UsageError(f"cannot listen: {exc}") from None
    return sockets


def _parser() -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="shmchannels-interface",
                                     description="Serve HTTP/1.1 and WebSocket for a Channels 1.x project.")
    parser.add_argument("channel_layer", help="the layer as module.path:attribute, e.g. project.asgi:channel_layer")
    parser.add_argument("-b", "--bind", help="TCP host to listen on (default 127.0.0.1); gunicorn forms "
                        "HOST:PORT, [V6]:PORT and unix:PATH work too")
    parser.add_argument("-p", "--port", type=int, help="TCP port (default 8000)")
    parser.add_argument("-u", "--unix-socket", help="unix socket path to listen on")
    parser.add_argument("--fd", type=int, action="append", default=[], help="inherited listening socket fd")
    parser.add_argument("-v", "--verbosity", type=int, default=1, choices=[0, 1, 2],
                        help="0 warnings, 1 info (+ access log on stdout), 2 debug")
    parser.add_argument("--access-log", help="access log file ('-' for stdout)")
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-For/-Proto/-Port")
    parser.add_argument("--forwarded-allow-ips", default=",".join(defaults.forwarded_allow_ips),
                        help="comma-separated proxy addresses trusted for proxy headers ('*' = all)")
    parser.add_argument("--root-path", default="", help="ASGI root_path (SCRIPT_NAME)")
    parser.add_argument("-t", "--http-timeout", type=float, default=defaults.http_timeout)
    parser.add_argument("--ping-interval", type=float, default=defaults.ping_interval)
    parser.add_argument("--ping-timeout", type=float, default=defaults.ping_timeout)
    parser.add_argument("--websocket-timeout", "--websocket_timeout", type=float, default=None,
                        help="maximum WebSocket lifetime (default: the layer's group_expiry; -1 = none)")
    parser.add_argument("--websocket-connect-timeout", "--websocket_connect_timeout", type=float,
                        default=defaults.websocket_connect_timeout)
    parser.add_argument("--ws-protocol", action="append", default=[], help="a subprotocol the server accepts")
    parser.add_argument("--graceful-timeout", type=float, default=defaults.graceful_timeout)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shmchannels-interface``; returns the exit status."""
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[args.verbosity]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access_log = args.access_log if args.access_log is not None else ("-" if args.verbosity >= 1 else None)
    sockets: list[socket.socket] = []
    try:
        options = Options(
            http_timeout=args.http_timeout, ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
            websocket_timeout=args.websocket_timeout, websocket_connect_timeout=args.websocket_connect_timeout,
            proxy_headers=args.proxy_headers,
            forwarded_allow_ips=tuple(ip.strip() for ip in args.forwarded_allow_ips.split(",") if ip.strip()),
            root_path=args.root_path, access_log=access_log, ws_protocols=tuple(args.ws_protocol),
            graceful_timeout=args.graceful_timeout, max_connections=args.max_connections)
        layer = load_layer(args.channel_layer)
        sockets = make_sockets(args.bind, args.port, args.unix_socket, args.fd)
    except (UsageError, ValueError) as exc:
        print(f"shmchannels-interface: error: {exc}", file=sys.stderr)
        return 1
    for sock in sockets:
        name = sock.getsockname()
        log.info("listening on %s", f"{name[0]}:{name[1]}" if isinstance(name, tuple) else name)
    # Unix socket files this command created are removed at exit (inherited fds are not ours).
    created = [sock.getsockname() for sock in sockets if sock.family == socket.AF_UNIX and sock.fileno() not in args.fd]
    try:
        return run_interface(layer, sockets, options)
    finally:
        for sock in sockets:
            sock.close()
        for path in created:
            try:
                os.unlink(path)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
