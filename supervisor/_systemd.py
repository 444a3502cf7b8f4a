"""systemd integration: sd_notify messages, the watchdog and socket activation.

The master speaks the notify protocol (operations.md §3.1) itself: a datagram per
message to ``$NOTIFY_SOCKET``. gunicorn only ever sends READY=1 once, before any worker
is up; we send READY=1 when an interface and a worker have booted, RELOADING=1 with
MONOTONIC_USEC around SIGHUP (without it ``systemctl reload`` may hang), STOPPING=1,
STATUS= lines and WATCHDOG=1.

The notifier takes ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` out of the
environment when it is created, so children forked later cannot inherit them
(systemd's NotifyAccess=main would log a warning for every message they sent).
"""

from __future__ import annotations

import logging
import os
import socket
import time

from ._compat_gunicorn import SD_LISTEN_FDS_START, listen_fds

__all__ = ["Notifier", "inherited_sockets"]

log = logging.getLogger("shmchannels.master")


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us (a no-op without one).

    Args:
        environ: the environment to take the variables from (they are removed from it).
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ  # type: ignore[assignment]
        self.address = environ.pop("NOTIFY_SOCKET", None) or None
        usec = environ.pop("WATCHDOG_USEC", None)
        pid = environ.pop("WATCHDOG_PID", None)
        self.watchdog_interval: float | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # Ping at twice the rate systemd asks for, so one slow loop pass is no miss.
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._last_ping = 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under a notify-type systemd unit."""
        return self.address is not None

    def send(self, *lines: str) -> None:
        """Send one datagram holding ``lines`` joined by newlines; errors are logged, never raised."""
        if not self.address:
            return
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8"), address)
        except OSError as exc:
            log.debug("sd_notify(%r) failed: %s", lines, exc)

    def ready(self, status: str) -> None:
        """Startup or reload finished."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """A reload started; systemd needs MONOTONIC_USEC to match it with the next READY=1."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> None:
        """Shutdown began."""
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """Update the line shown by ``systemctl status``."""
        self.send(f"STATUS={status}")

    def ping_watchdog(self, now: float) -> None:
        """Send WATCHDOG=1 if the watchdog is on and half its period passed.

        The ping covers the master's own liveness only: a stuck child is the master's
        business (timeouts), or one hung worker would make systemd restart everything.
        """
        if self.watchdog_interval is None or now - self._last_ping < self.watchdog_interval:
            return
        self._last_ping = now
        self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the datagram socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def inherited_sockets(environ: dict[str, str] | None = None) -> list[tuple[socket.socket, str]]:
    """Take the sockets systemd passed by socket activation.

    Honours LISTEN_PID (must be us), LISTEN_FDS and LISTEN_FDNAMES, and removes the three
    variables from the environment so children do not see them.

    Returns:
        (listening socket, name) pairs, fds 3, 4, ...; the name is the unit's
        FileDescriptorName (or "fd3", ... when unnamed). Empty without activation.
    """
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    count = listen_fds(unset_environment=True)
    names = environ.pop("LISTEN_FDNAMES", "").split(":")
    sockets = []
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        # socket.socket(fileno=) finds family and type itself; the fd stays open in
        # the master for the whole run, so respawned interfaces inherit it again.
        sock = socket.socket(fileno=fd)
        name = names[index] if index < len(names) and names[index] else f"fd{fd}"
        sockets.append((sock, name))
    return sockets
