"""What a child is, and the first steps a forked child takes before running its target.

The arbiter's records (:class:`Child`), the table row (:class:`ChildSpec`) and what a
target receives (:class:`ChildContext`) live here, with the child side of a fork:
closing what the child must not hold, its title, privileges, and the booted/heartbeat
callables that write its scoreboard slot.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from . import _process

if TYPE_CHECKING:
    from .arbiter import Arbiter

__all__ = ["Child", "ChildContext", "ChildSpec", "describe_status", "prepare_child", "run_child"]


@dataclass(frozen=True)
class ChildSpec:
    """One row of the table: a kind of child.

    Attributes:
        kind: ``"interface"`` or ``"worker"`` (anything, for tests).
        count: how many to keep running.
        target: the child's program, ``target(ctx) -> exit code``.
        timeout: seconds without heartbeat before SIGABRT (0 = never); also the boot limit.
        gets_listeners: keeps the listening sockets (others close them after fork).
        reload_always: a SIGHUP always boots a new generation (workers: new code).
        fingerprint: settings this kind depends on; a change on SIGHUP means a new generation.
        scalable: SIGTTIN/SIGTTOU change its count.
    """

    kind: str
    count: int
    target: Callable[["ChildContext"], int]
    timeout: float
    gets_listeners: bool
    reload_always: bool = False
    fingerprint: tuple[Any, ...] = ()
    scalable: bool = False


@dataclass
class ChildContext:
    """What a child's target gets (also the ``child`` object of the hooks).

    Attributes:
        kind, number, generation: which child this is (``worker 2``).
        pid: the child's pid.
        config: the master's resolved Config.
        sockets: the listening sockets (empty unless the spec gets_listeners).
        booted: call once when serving; an interface passes its process-channel prefix.
        heartbeat: call at least every second while healthy.
    """

    kind: str
    number: int
    generation: int
    pid: int
    config: Any
    sockets: list[socket.socket]
    booted: Callable[..., None]
    heartbeat: Callable[[], None]


@dataclass
class Child:
    """The master's record of one live child."""

    kind: str
    number: int
    generation: int
    pid: int
    slot: int
    spawned_at: float
    booted: bool = False
    retiring: bool = False
    kill_at: float | None = None
    aborted_at: float | None = None


def prepare_child(arbiter: "Arbiter", spec: ChildSpec, child: Child) -> None:
    """In the new child: close the master's resources it must not hold, set title, drop privileges."""
    child.pid = os.getpid()
    # The child keeps only the write end of the master's wake-up pipe: booted() writes
    # to it so the master notices a boot at once instead of on its next 1 s tick.
    os.close(arbiter._pipe[0])  # type: ignore[index]
    arbiter.notifier.close()
    if not spec.gets_listeners:
        for listener in arbiter.listeners:
            listener.sock.close()
    _process.set_title(f"shmchannels: {spec.kind} {child.number} [{arbiter.name}]")
    uid, gid = _process.lookup_ids(arbiter.config.user, arbiter.config.group)
    _process.drop_privileges(uid, gid)


def run_child(arbiter: "Arbiter", spec: ChildSpec, child: Child) -> int:
    """In the new child: build the context, run ``post_fork``, the target, ``worker_exit``."""
    slot = child.slot
    scoreboard = arbiter.scoreboard
    wake_fd = arbiter._pipe[1]  # type: ignore[index]

    def booted(prefix: str | None = None) -> None:
        scoreboard.mark_booted(slot, prefix)
        try:
            os.write(wake_fd, b"b")
        except OSError:
            pass  # pipe full or master gone: the master polls anyway

    def heartbeat() -> None:
        scoreboard.beat(slot)

    ctx = ChildContext(kind=spec.kind, number=child.number, generation=child.generation, pid=os.getpid(),
                       config=arbiter.config,
                       sockets=[l.sock for l in arbiter.listeners] if spec.gets_listeners else [],
                       booted=booted, heartbeat=heartbeat)
    arbiter.run_hook("post_fork", arbiter, ctx)
    try:
        return spec.target(ctx)
    finally:
        arbiter.run_hook("worker_exit", arbiter, ctx)


def describe_status(status: int) -> str:
    """Why a child ended: ``exit code N`` or ``signal SIGKILL``."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"
