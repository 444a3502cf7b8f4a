"""A real ``shmchannels`` master whose children run a tiny fake target (STYLE.md #19).

Run as ``python -m tests.supervisor.fake_master [shmchannels args]`` with ``FAKE_DIR``
set to a directory the test owns. The fake children's behaviour is steered by flag
files in that directory, read at each spawn, so one test can make the next generation
fail while the current one keeps running:

- ``fail_<kind>``: print ``FAKE BOOT ERROR <kind>`` to stderr and exit 3 before booting;
- ``hang_<kind>``: boot, then stop sending heartbeats (and ignore SIGTERM);
- ``slow_<kind>``: wait that many seconds (file content) before booting.

Every child appends ``<event> <kind> <number> <generation> <pid>`` lines to ``events``.
The fake layer records ``discard_prefix`` calls in ``discarded`` and ``unlink`` in ``unlinked``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from supervisor.arbiter import ChildContext, ChildSpec
from supervisor.cli import main

FAKE_DIR = os.environ.get("FAKE_DIR", ".")


def _flag(name: str) -> str | None:
    path = os.path.join(FAKE_DIR, name)
    if os.path.exists(path):
        with open(path) as handle:
            return handle.read().strip() or "1"
    return None


def _event(text: str) -> None:
    with open(os.path.join(FAKE_DIR, "events"), "a") as handle:
        handle.write(text + "\n")


def fake_target(ctx: ChildContext) -> int:
    """Boot (or fail, or hang), heartbeat every 50 ms, exit 0 on SIGTERM/SIGQUIT."""
    tag = f"{ctx.kind} {ctx.number} {ctx.generation} {os.getpid()}"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append("term"))
    signal.signal(signal.SIGQUIT, lambda *a: stopping.append("quit"))
    signal.signal(signal.SIGUSR1, lambda *a: _event(f"usr1 {tag}"))
    _event(f"start {tag} listeners={len(ctx.sockets)} notify={os.environ.get('NOTIFY_SOCKET')}")
    if _flag(f"fail_{ctx.kind}"):
        print(f"FAKE BOOT ERROR {ctx.kind}", file=sys.stderr, flush=True)
        return 3
    slow = _flag(f"slow_{ctx.kind}")
    if slow:
        time.sleep(float(slow))
    ctx.booted(f"interface.fake{os.getpid()}!" if ctx.kind == "interface" else None)
    _event(f"booted {tag}")
    if _flag(f"hang_{ctx.kind}"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    while not stopping:
        ctx.heartbeat()
        time.sleep(0.05)
    _event(f"stopped-{stopping[0]} {tag}")
    return 0


def fake_specs(config: object) -> list[ChildSpec]:
    """Two kinds, like the real table: interfaces keep the sockets, workers scale."""
    return [
        ChildSpec("interface", config.interfaces, fake_target, config.timeout, gets_listeners=True,
                  fingerprint=(tuple(config.bind), config.http_timeout)),
        ChildSpec("worker", config.workers, fake_target, config.timeout, gets_listeners=False,
                  reload_always=True, scalable=True),
    ]


class FakeLayer:
    """Records what the master asks of its layer."""

    segment_name = "fake"

    def discard_prefix(self, prefix: str) -> None:
        with open(os.path.join(FAKE_DIR, "discarded"), "a") as handle:
            handle.write(prefix + "\n")

    def unlink(self) -> None:
        open(os.path.join(FAKE_DIR, "unlinked"), "w").close()

    def close(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], specs_factory=fake_specs, layer_loader=lambda config: FakeLayer()))
