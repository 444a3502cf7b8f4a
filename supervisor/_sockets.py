"""Listening sockets: bound once by the master and shared by every interface process.

Written here rather than taken from ``gunicorn.sock.create_sockets``: that function
calls ``sys.exit`` on a bind failure and needs gunicorn's whole config object
(operations.md §1.4). The address grammar is gunicorn's (``parse_address``).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass

from ._compat_gunicorn import parse_address

__all__ = ["BindError", "Listener", "bind_all", "close_all", "describe"]

#: Pending-connection queue: gunicorn's default backlog.
BACKLOG = 2048


class BindError(Exception):
    """An address could not be bound or used; the message names the address."""


@dataclass
class Listener:
    """A listening socket and where it came from.

    Attributes:
        sock: the listening socket (inherited by interface children).
        address: the bind string (``127.0.0.1:8000``, ``unix:/run/x.sock``) or the
            systemd name.
        unix_path: the filesystem path of a unix socket we bound (unlinked at stop), else None.
        from_systemd: passed by socket activation (never unlinked or re-listened).
    """

    sock: socket.socket
    address: str
    unix_path: str | None = None
    from_systemd: bool = False


def describe(sock: socket.socket) -> str:
    """Return a readable local address (``127.0.0.1:8000``, ``[::1]:8000``, ``unix:/path``)."""
    try:
        name = sock.getsockname()
    except OSError:
        return f"fd {sock.fileno()}"
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def _bind_unix(path: str, umask: int | None) -> socket.socket:
    # A stale socket file from a crashed run would make bind fail with EADDRINUSE;
    # remove it, but never remove anything that is not a socket.
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        sock.bind(path)
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR: restart at once while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    return sock


def bind_one(address: str, umask: int | None = None) -> Listener:
    """Bind and listen on one address.

    Raises:
        BindError: the address is in use, not permitted, or the fd is not a socket.
    """
    parsed = parse_address(address)
    try:
        if isinstance(parsed, int):
            sock = socket.socket(fileno=parsed)
            if sock.type != socket.SOCK_STREAM:
                raise BindError(f"cannot use {address}: fd {parsed} is not a stream socket")
            return Listener(sock, address)
        if isinstance(parsed, str):
            sock = _bind_unix(parsed, umask)
            sock.listen(BACKLOG)
            return Listener(sock, address, unix_path=parsed)
        host, port = parsed
        sock = _bind_tcp(host, port)
        sock.listen(BACKLOG)
        return Listener(sock, address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EBADF or exc.errno == errno.ENOTSOCK:
            reason = "not an open socket"
        raise BindError(f"cannot listen on {address}: {reason}") from None


def bind_all(addresses: list[str], umask: int | None = None) -> list[Listener]:
    """Bind every address; on failure close what was bound and raise BindError."""
    listeners: list[Listener] = []
    try:
        for address in addresses:
            listeners.append(bind_one(address, umask))
    except BindError:
        close_all(listeners)
        raise
    return listeners


def close_all(listeners: list[Listener], unlink: bool = True) -> None:
    """Close the master's copies; unlink unix socket files we created ourselves."""
    for listener in listeners:
        try:
            listener.sock.close()
        except OSError:
            pass
        if unlink and listener.unix_path and not listener.from_systemd:
            try:
                os.unlink(listener.unix_path)
            except OSError:
                pass
