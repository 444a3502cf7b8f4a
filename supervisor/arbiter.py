"""The master: forks interface servers and Django workers, watches them, reloads, stops.

Theory of operation
-------------------
gunicorn's arbiter, smaller. Signal handlers only put the signal in a queue and write a
byte to a pipe; ``run()`` is one loop::

    wait(≤1 s for a signal) -> handle_<signal> -> reap -> murder -> manage

- **ChildSpec table.** Each kind of child (``interface``, ``worker``) is one row: how
  many, the function the child runs, its heartbeat timeout, whether it keeps the
  listening sockets. There is no per-kind code path; tests plug in fake targets.
- **Scoreboard.** Children report BOOTED and heartbeats in an anonymous shared mapping
  (``_scoreboard.py``). Boot success is that state, never an exit code.
- **Generations.** Each kind has a current generation number. ``manage()`` keeps
  ``count`` children of the current generation alive and, once they have all booted,
  sends SIGTERM to any older ones. SIGHUP bumps the generation of the workers (and of
  the interfaces only if their settings changed), so a deploy boots new workers next
  to the old, then retires the old: open WebSockets, held by the interfaces, stay up.
  If a child of the new generation dies before booting, the generation is abandoned
  and the old one kept.
- **Failures.** Before the service is ready, a child that dies (or times out) before
  booting halts the master with exit code 1: the project cannot start (an ImportError
  shows in the child's traceback above). Afterwards, children that die before booting
  are respawned with exponential backoff (0.5 s doubling to 30 s) per kind.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import _process
from ._child import Child, ChildContext, ChildSpec, describe_status, prepare_child, run_child
from ._scoreboard import BOOTED, Scoreboard
from ._sockets import Listener
from ._systemd import Notifier

__all__ = ["Arbiter", "Child", "ChildContext", "ChildSpec"]

log = logging.getLogger("shmchannels.master")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
#: How long after SIGABRT a timed-out child gets before SIGKILL.
ABORT_GRACE = 1.0
#: Fast stop (SIGINT/SIGQUIT): children get this long after SIGQUIT, then SIGKILL.
QUICK_STOP = 3.0
_SIGNAMES = {getattr(signal, name): name[3:].lower() for name in dir(signal)
             if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


@dataclass
class _KindState:
    count: int
    generation: int
    backoff_streak: int = 0
    next_spawn_at: float = 0.0
    reload_from: int | None = None  # old generation kept until the new one boots


class Arbiter:
    """The master process.

    Args:
        config: the resolved Config (see ``_config.py``).
        specs_factory: ``config -> [ChildSpec]``; called at start and on SIGHUP.
        listeners: the listening sockets (bound by the caller, or from systemd).
        reload_config: re-reads the configuration on SIGHUP (raises ConfigError).
        rebind: ``(config) -> [Listener]`` binds new sockets when ``bind`` changed on reload.
        layer: the channel layer object the master created, or None. The master calls
            ``discard_prefix`` when an interface dies and ``unlink`` at exit if present.
        notifier: the sd_notify sender.
        name: the project name in process titles.
    """

    def __init__(self, config: Any, specs_factory: Callable[[Any], Sequence[ChildSpec]],
                 listeners: list[Listener], reload_config: Callable[[], Any] | None = None,
                 rebind: Callable[[Any], list[Listener]] | None = None, layer: Any = None,
                 notifier: Notifier | None = None, name: str = "shmchannels") -> None:
        self.config = config
        self.specs_factory = specs_factory
        self.listeners = listeners
        self.reload_config = reload_config
        self.rebind = rebind
        self.layer = layer
        self.notifier = notifier or Notifier({})
        self.name = name
        self.pid = os.getpid()
        self.specs: dict[str, ChildSpec] = {}
        self.kinds: dict[str, _KindState] = {}
        self.children: dict[int, Child] = {}
        self.scoreboard = Scoreboard()
        self.ready = False
        self.halt_reason: str | None = None
        self._generation_counter = 0
        self._signals: deque[int] = deque()
        self._pipe: tuple[int, int] | None = None
        self._last_status = ""

    # -- setup ------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe = (read_fd, write_fd)
        # Interrupted system calls are retried by Python itself (PEP 475); the handler's
        # byte on the pipe is what ends the select() in _wait().
        for signum in _process.MASTER_SIGNALS:
            signal.signal(signum, self._enqueue)

    def _enqueue(self, signum: int, frame: Any) -> None:
        # A handler only records the signal; the loop does the work (STYLE.md #10).
        if signum != signal.SIGCHLD and len(self._signals) < 8:
            self._signals.append(signum)
        try:
            os.write(self._pipe[1], b".")  # type: ignore[index]
        except OSError:
            pass  # pipe full: the loop is awake anyway

    def _apply_specs(self, specs: Sequence[ChildSpec]) -> None:
        for spec in specs:
            self.specs[spec.kind] = spec
            if spec.kind not in self.kinds:
                self.kinds[spec.kind] = _KindState(count=spec.count, generation=self._next_generation())
            else:
                self.kinds[spec.kind].count = spec.count

    def _next_generation(self) -> int:
        self._generation_counter += 1
        return self._generation_counter

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped; returns the exit code (0 after a requested stop)."""
        self._install_signals()
        self._apply_specs(self.specs_factory(self.config))
        self._set_title()
        log.info("Starting shmchannels master (pid %s) for %s", self.pid, self.name)
        try:
            while True:
                signum = self._wait(self._tick())
                while signum is not None:
                    code = self._dispatch(signum)
                    if code is not None:
                        return self._finish(code)
                    signum = self._signals.popleft() if self._signals else None
                self.reap_children()
                if self.halt_reason:
                    log.error("%s", self.halt_reason)
                    self.stop(graceful=False)
                    return self._finish(1)
                self.murder_stale()
                self.manage_children()
                self._update_status()
                self.notifier.ping_watchdog(time.monotonic())
        except Exception:
            log.exception("Unhandled error in the master; stopping children")
            self.stop(graceful=False)
            return self._finish(1)

    def _tick(self) -> float:
        interval = 1.0
        if self.notifier.watchdog_interval:
            interval = min(interval, self.notifier.watchdog_interval / 2)
        pending = [k.next_spawn_at - time.monotonic() for k in self.kinds.values() if k.backoff_streak]
        if not self.ready:
            interval = min(interval, 0.1)  # notice boots quickly while starting
        return max(0.01, min([interval, *pending]))

    def _wait(self, timeout: float) -> int | None:
        """Sleep until a signal arrives or ``timeout`` passes; return the signal or None."""
        if self._signals:
            return self._signals.popleft()
        try:
            ready, _, _ = select.select([self._pipe[0]], [], [], timeout)  # type: ignore[index]
        except InterruptedError:
            ready = []
        if ready:
            try:
                while os.read(self._pipe[0], 4096):  # type: ignore[index]
                    pass
            except BlockingIOError:
                pass
        return self._signals.popleft() if self._signals else None

    def _dispatch(self, signum: int) -> int | None:
        name = _SIGNAMES.get(signum, str(signum))
        handler = getattr(self, f"handle_{name}", None)
        if handler is None:
            log.debug("Ignoring signal %s", name)
            return None
        return handler()

    # -- signal handlers ---------------------------------------------------------------
    def handle_term(self) -> int:
        """Graceful stop: interfaces drain, workers finish their message."""
        log.info("Handling signal: term")
        self.stop(graceful=True)
        return 0

    def handle_int(self) -> int:
        """Fast stop (Ctrl-C)."""
        log.info("Handling signal: int")
        self.stop(graceful=False)
        return 0

    def handle_quit(self) -> int:
        """Fast stop."""
        log.info("Handling signal: quit")
        self.stop(graceful=False)
        return 0

    def handle_ttin(self) -> None:
        """One more worker."""
        for kind, spec in self.specs.items():
            if spec.scalable:
                self.kinds[kind].count += 1
                log.info("Handling signal: ttin; %s count now %d", kind, self.kinds[kind].count)

    def handle_ttou(self) -> None:
        """One worker less (never below one)."""
        for kind, spec in self.specs.items():
            if spec.scalable and self.kinds[kind].count > 1:
                self.kinds[kind].count -= 1
                log.info("Handling signal: ttou; %s count now %d", kind, self.kinds[kind].count)

    def handle_usr1(self) -> None:
        """Reopen log files, and tell the children that listen for it to do the same."""
        log.info("Handling signal: usr1; reopening logs")
        for handler in logging.getLogger("shmchannels").handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()
        for child in list(self.children.values()):
            if _process.catches_signal(child.pid, signal.SIGUSR1):
                self._kill(child, signal.SIGUSR1)

    def handle_winch(self) -> None:
        """Ignored: terminals send it on every resize."""

    def handle_hup(self) -> None:
        """Reload: re-read the config, boot a new worker generation, then retire the old one."""
        log.info("Handling signal: hup; reloading")
        self.notifier.reloading()
        if self.reload_config is None:
            self.notifier.ready(self._status_text())
            return
        try:
            new_config = self.reload_config()
        except Exception as exc:  # ConfigError, or anything a config file raises
            log.error("Reload failed: %s; keeping the running configuration", exc)
            self.notifier.ready("reload failed, configuration kept; " + self._status_text())
            return
        old_specs = dict(self.specs)
        new_specs = {spec.kind: spec for spec in self.specs_factory(new_config)}
        new_listeners = None
        if self.rebind is not None and list(new_config.bind) != list(self.config.bind):
            try:
                new_listeners = self.rebind(new_config)
            except Exception as exc:
                log.error("Reload failed: %s; keeping the old sockets and generation", exc)
                self.notifier.ready("reload failed, old generation kept; " + self._status_text())
                return
        self.config = new_config
        self.run_hook("on_reload", self)
        if new_listeners is not None:
            self._replace_listeners(new_listeners)
        for kind, spec in new_specs.items():
            old = old_specs.get(kind)
            self._apply_specs([spec])
            state = self.kinds[kind]
            changed = old is None or spec.fingerprint != old.fingerprint or new_listeners is not None
            if spec.reload_always or changed:
                if state.reload_from is None:
                    state.reload_from = state.generation
                else:
                    # A reload during a reload (an editor saving twice): the half-booted
                    # generation is dropped; the serving one stays until the newest boots.
                    for child in list(self.children.values()):
                        if child.kind == kind and child.generation == state.generation:
                            self._retire(child, graceful_timeout=1.0)
                state.generation = self._next_generation()
                state.backoff_streak = 0
                state.next_spawn_at = 0.0
                log.info("Booting a new %s generation (%d)", kind, state.generation)
        if not any(state.reload_from is not None for state in self.kinds.values()):
            self.notifier.ready(self._status_text())

    def _replace_listeners(self, listeners: list[Listener]) -> None:
        from ._sockets import close_all
        old, self.listeners = self.listeners, listeners
        # The old interfaces keep their own copies of the old sockets while they drain;
        # an old unix socket path is removed so new clients reach the new address only.
        close_all(old)

    # -- reap / murder / manage ---------------------------------------------------------------
    def reap_children(self) -> None:
        """Collect every exited child, log why it died and decide what it means."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._child_exited(child, status)

    def _child_exited(self, child: Child, status: int) -> None:
        booted = child.booted or self.scoreboard.state(child.slot) == BOOTED
        prefix = self.scoreboard.prefix(child.slot)
        self.scoreboard.release(child.slot)
        cause = describe_status(status)
        level = logging.INFO if child.retiring and cause in ("exit code 0", "signal SIGTERM") else logging.WARNING
        if (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and child.aborted_at is None
                and not child.retiring):
            cause += " (perhaps out of memory?)"
            level = logging.ERROR
        log.log(level, "%s %d (pid %d) exited: %s", child.kind, child.number, child.pid, cause)
        if prefix and self.layer is not None and hasattr(self.layer, "discard_prefix"):
            try:
                self.layer.discard_prefix(prefix)
                log.info("Discarded the channels and group memberships of %s", prefix)
            except Exception as exc:  # the layer may be briefly unavailable; never crash the master
                log.error("Could not discard %s: %s", prefix, exc)
        self.run_hook("child_exit", self, self._hook_child(child))
        if booted or child.retiring:
            if booted and not child.retiring:
                self.kinds[child.kind].backoff_streak = 0
            return
        state = self.kinds[child.kind]
        why = "did not boot in time" if child.aborted_at is not None else f"failed to boot ({cause})"
        if not self.ready:
            self.halt_reason = f"{child.kind} {child.number} {why}; see its error above. Exiting."
        elif state.reload_from is not None and child.generation == state.generation:
            self._abandon_reload(child.kind, f"{child.kind} {child.number} {why}")
        else:
            state.backoff_streak += 1
            delay = min(BACKOFF_START * 2 ** (state.backoff_streak - 1), BACKOFF_MAX)
            state.next_spawn_at = time.monotonic() + delay
            log.error("%s %d %s; next attempt in %.1f s", child.kind, child.number, why, delay)

    def _abandon_reload(self, kind: str, why: str) -> None:
        state = self.kinds[kind]
        failed, state.generation, state.reload_from = state.generation, state.reload_from, None  # type: ignore[assignment]
        log.error("Reload failed: %s; keeping the old %s generation", why, kind)
        for child in list(self.children.values()):
            if child.kind == kind and child.generation == failed:
                self._retire(child, graceful_timeout=0.5)
        if not any(s.reload_from is not None for s in self.kinds.values()):
            self.notifier.ready("reload failed, old generation kept; " + self._status_text())

    def murder_stale(self) -> None:
        """SIGABRT children whose heartbeat is older than their timeout, SIGKILL if that
        did not help; SIGKILL retiring children past their graceful deadline."""
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.retiring:
                if child.kill_at is not None and now >= child.kill_at:
                    log.warning("%s %d (pid %d) did not stop in time: SIGKILL", child.kind, child.number, child.pid)
                    self._kill(child, signal.SIGKILL)
                    child.kill_at = None
                continue
            timeout = self.specs[child.kind].timeout
            if timeout <= 0:
                continue
            if child.aborted_at is not None:
                if now - child.aborted_at >= ABORT_GRACE:
                    self._kill(child, signal.SIGKILL)
                continue
            last = self.scoreboard.last_heartbeat(child.slot)
            if last <= 0.0:
                # A slot always holds the spawn time or a later heartbeat; an empty one
                # means the record is not what we think: never kill on that evidence.
                log.error("%s %d (pid %d): empty scoreboard slot %d", child.kind, child.number, child.pid, child.slot)
                continue
            silent = now - last
            if silent > timeout:
                log.critical("%s TIMEOUT: %s %d (pid %d) sent no heartbeat for %.1f s",
                             child.kind.upper(), child.kind, child.number, child.pid, silent)
                child.aborted_at = now
                self._kill(child, signal.SIGABRT)

    def manage_children(self) -> None:
        """Keep ``count`` current-generation children per kind; retire extras and old generations."""
        now = time.monotonic()
        for kind, spec in self.specs.items():
            state = self.kinds[kind]
            current = [c for c in self.children.values()
                       if c.kind == kind and c.generation == state.generation and not c.retiring]
            for child in current:
                if not child.booted and self.scoreboard.state(child.slot) == BOOTED:
                    child.booted = True
                    state.backoff_streak = 0
                    log.info("%s %d (pid %d) booted", kind, child.number, child.pid)
            missing = state.count - len(current)
            if missing > 0 and now >= state.next_spawn_at:
                # While backing off, try one at a time rather than a burst that all fail.
                for _ in range(1 if state.backoff_streak else missing):
                    self.spawn_child(spec, state.generation)
            elif missing < 0:
                for child in sorted(current, key=lambda c: c.spawned_at)[:-missing]:
                    self._retire(child)
            if len(current) >= state.count and all(c.booted for c in current):
                old = [c for c in self.children.values()
                       if c.kind == kind and c.generation != state.generation and not c.retiring]
                for child in old:
                    self._retire(child)
                if state.reload_from is not None:
                    state.reload_from = None
                    log.info("Reload of %s done: generation %d serving", kind, state.generation)
                    if not any(s.reload_from is not None for s in self.kinds.values()):
                        self.notifier.ready(self._status_text())
        if not self.ready and all(
            any(c.booted for c in self.children.values() if c.kind == kind)
            for kind, state in self.kinds.items() if state.count > 0
        ):
            self.ready = True
            log.info("Ready: %s", self._status_text())
            self.notifier.ready(self._status_text())
            self.run_hook("when_ready", self)

    def spawn_child(self, spec: ChildSpec, generation: int) -> Child | None:
        """Fork one child of ``spec``; returns its record (None if the scoreboard is full)."""
        slot = self.scoreboard.allocate()
        if slot is None:
            log.error("Scoreboard full (%d children); not spawning another %s", self.scoreboard.slots, spec.kind)
            return None
        used = {c.number for c in self.children.values() if c.kind == spec.kind}
        number = next(n for n in range(1, len(used) + 2) if n not in used)
        child = Child(kind=spec.kind, number=number, generation=generation, pid=0, slot=slot,
                      spawned_at=time.monotonic())
        pid = _process.fork_child(lambda: prepare_child(self, spec, child),
                                  lambda: run_child(self, spec, child), self.pid,
                                  float(self.config.graceful_timeout))
        child.pid = pid
        self.scoreboard.set_pid(slot, pid)
        self.children[pid] = child
        log.info("Booting %s %d (pid %d)", spec.kind, number, pid)
        return child

    # -- helpers ------------------------------------------------------------------------------
    def _retire(self, child: Child, graceful_timeout: float | None = None) -> None:
        grace = float(self.config.graceful_timeout) if graceful_timeout is None else graceful_timeout
        child.retiring = True
        child.kill_at = time.monotonic() + grace
        log.info("Retiring %s %d (pid %d)", child.kind, child.number, child.pid)
        self._kill(child, signal.SIGTERM)

    def _kill(self, child: Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass  # already dead; the next reap collects it

    def _hook_child(self, child: Child) -> ChildContext:
        return ChildContext(kind=child.kind, number=child.number, generation=child.generation, pid=child.pid,
                            config=self.config, sockets=[], booted=lambda *a: None, heartbeat=lambda: None)

    def run_hook(self, name: str, *args: Any) -> None:
        """Run the server hook ``name`` from the config; its errors are logged, never raised."""
        hook = self.config.hook(name) if hasattr(self.config, "hook") else None
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            log.exception("Exception in %s hook", name)

    def _status_text(self) -> str:
        parts = []
        for kind, state in self.kinds.items():
            live = [c for c in self.children.values() if c.kind == kind and not c.retiring]
            booted = sum(1 for c in live if c.booted and c.generation == state.generation)
            text = f"{booted}/{state.count} {kind}s"
            if state.backoff_streak:
                text += " (degraded: children fail to boot)"
            parts.append(text)
        if any(s.reload_from is not None for s in self.kinds.values()):
            parts.append("reloading")
        return ", ".join(parts)

    def _update_status(self) -> None:
        text = self._status_text()
        if text != self._last_status and self.ready:
            self._last_status = text
            self.notifier.status(text)

    def _set_title(self) -> None:
        _process.set_title(f"shmchannels: master [{self.name}]")

    # -- stopping -----------------------------------------------------------------------------
    def stop(self, graceful: bool = True) -> None:
        """Stop every child: SIGTERM (graceful) or SIGQUIT (fast), SIGKILL at the deadline.

        In a graceful stop the children holding the listeners (interfaces) go first and
        the others (workers) keep serving until those are gone, so requests the
        interfaces are draining still get answered; the workers get SIGTERM when the
        interfaces have exited, or with a fifth of the time left at the latest. A
        SIGINT/SIGQUIT during a graceful stop turns it into a fast one.
        """
        from ._sockets import close_all
        self.notifier.stopping(f"stopping {len(self.children)} children")
        close_all(self.listeners)
        self.listeners = []
        limit = float(self.config.graceful_timeout) if graceful else min(QUICK_STOP, float(self.config.graceful_timeout))
        start = time.monotonic()
        deadline = start + limit
        first = {kind for kind, spec in self.specs.items() if spec.gets_listeners} if graceful else set(self.specs)
        for child in list(self.children.values()):
            child.retiring = True
            if child.kind in first or child.kind not in self.specs:
                self._kill(child, signal.SIGTERM if graceful else signal.SIGQUIT)
        second_sent = not graceful
        while self.children and time.monotonic() < deadline:
            received = self._wait(0.1)
            if graceful and received in (signal.SIGINT, signal.SIGQUIT):
                log.info("Second signal during graceful stop: stopping fast")
                graceful, second_sent = False, True
                deadline = min(deadline, time.monotonic() + QUICK_STOP)
                for child in list(self.children.values()):
                    self._kill(child, signal.SIGQUIT)
            self.reap_children()
            now = time.monotonic()
            if not second_sent and (not any(c.kind in first for c in self.children.values())
                                    or now >= deadline - limit / 5):
                second_sent = True
                for child in list(self.children.values()):
                    self._kill(child, signal.SIGTERM)
            self.notifier.ping_watchdog(now)
        for child in list(self.children.values()):
            log.warning("%s %d (pid %d) still running at the deadline: SIGKILL", child.kind, child.number, child.pid)
            self._kill(child, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < kill_deadline:
            time.sleep(0.02)
            self.reap_children()

    def release_layer(self) -> None:
        """Unlink (when no child still uses it) and close the layer the master created."""
        if self.layer is not None:
            if self.children:
                log.error("Children still alive; keeping the shared-memory segment")
            elif hasattr(self.layer, "unlink"):
                try:
                    self.layer.unlink()
                    log.info("Removed the shared-memory segment %s", getattr(self.layer, "segment_name", ""))
                except Exception as exc:
                    log.error("Could not remove the shared-memory segment: %s", exc)
            try:
                self.layer.close()
            except Exception:
                pass

    def _finish(self, code: int) -> int:
        self.release_layer()
        self.run_hook("on_exit", self)
        self.notifier.close()
        if self._pipe:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        log.info("Shutting down: master (exit code %d)", code)
        return code
