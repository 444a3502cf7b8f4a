"""All the OS fiddling of the master and its children, each call with its reason.

Kept apart from ``arbiter.py`` (STYLE.md #12) so the arbiter reads as policy: who to
spawn, when to kill. Here is the mechanism: fork discipline, signal reset, parent-death
signal, privilege drop, process titles.
"""

from __future__ import annotations

import ctypes
import faulthandler
import grp
import io
import os
import pwd
import signal
import sys
import threading
import time
import traceback
from typing import Callable

__all__ = [
    "MASTER_SIGNALS",
    "catches_signal",
    "drop_privileges",
    "fork_child",
    "lookup_ids",
    "set_parent_death_signal",
    "set_title",
]

#: The signals the master handles; a child resets them all to the default action so the
#: master's Python handlers (which write to the master's wake-up pipe) never run there.
MASTER_SIGNALS = (
    signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD,
)

_PR_SET_PDEATHSIG = 1


def set_title(title: str) -> None:
    """Set the process title shown by ps/top (``shmchannels: worker 2 [proj]``)."""
    try:
        import setproctitle
    except ImportError:  # optional at runtime: titles are a convenience
        return
    setproctitle.setproctitle(title)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies.

    Linux only (prctl PR_SET_PDEATHSIG); must be called after any uid change, because
    changing credentials clears it.

    Returns:
        True when the kernel accepted it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(master_pid: int, grace: float) -> None:
    # Backstop for PDEATHSIG (not inherited across setuid, not on every kernel): poll
    # the parent pid once a second; when the master is gone, stop gracefully, and leave
    # for good if the graceful stop does not end the process in time.
    while os.getppid() == master_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace + 2.0)
    os._exit(1)


def lookup_ids(user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """Resolve user and group names (or numbers) to uid and gid.

    Raises:
        KeyError: with a readable message when a name does not exist.
    """
    uid = gid = None
    if user is not None:
        if user.isdigit():
            uid = int(user)
        else:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise KeyError(f"no such user: {user}") from None
            uid, gid = entry.pw_uid, entry.pw_gid
    if group is not None:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise KeyError(f"no such group: {group}") from None
    return uid, gid


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Switch to ``gid`` then ``uid`` (group first: after setuid we could no longer).

    Supplementary groups are reset to the user's own (initgroups), fixing the pitfall
    of gunicorn's set_owner_process which keeps root's groups (operations.md §2.2).
    """
    if gid is not None and gid != os.getgid():
        os.setgid(gid)
    if uid is not None and uid != os.getuid():
        name = pwd.getpwuid(uid).pw_name
        os.initgroups(name, gid if gid is not None else pwd.getpwuid(uid).pw_gid)
        os.setuid(uid)


def catches_signal(pid: int, signum: int) -> bool:
    """True when process ``pid`` has a handler for ``signum`` (from /proc/PID/status SigCgt).

    Used before forwarding SIGUSR1: its default action is to terminate, so a child
    that does not handle it must not receive it.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except OSError:
        return False
    return False


def _dump_stacks_on_abort() -> None:
    # The master sends SIGABRT to a child that stopped sending heartbeats. faulthandler
    # answers from C, even while every Python thread is stuck, with the stack of each
    # thread on stderr (then the default action ends the process): the operator sees the
    # consumer line that hung. It covers SIGSEGV/SIGBUS/SIGFPE/SIGILL crashes as well.
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        pass  # stderr without a file descriptor: no dump, the kill still happens


def fork_child(prepare: Callable[[], None], main: Callable[[], int], master_pid: int, grace: float) -> int:
    """Fork; the parent gets the pid back at once, the child never returns.

    In the child: signals back to their defaults, ``prepare()`` (close fds, title,
    privileges, hooks), parent-death signal + watcher, then ``main()``. Whatever
    happens, the child leaves through ``os._exit`` with main's return value, or 1
    after printing the traceback to stderr (inherited from the master, so the user
    sees why a child failed to boot).

    Args:
        prepare: runs first in the child.
        main: the child's program; returns an exit code.
        master_pid: the parent; the child exits when it changes.
        grace: seconds the child may take to stop once the master is gone.

    Returns:
        The child's pid (in the parent).
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in MASTER_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        prepare()
        # After prepare(): a uid change would have cleared the parent-death signal.
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != master_pid:
            os._exit(0)  # the master died between fork and prctl
        threading.Thread(target=_watch_parent, args=(master_pid, grace), name="parent-watch", daemon=True).start()
        _dump_stacks_on_abort()
        code = main()
        code = code if isinstance(code, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the child must never unwind into the master's code
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return 0  # unreachable: keeps type checkers content
