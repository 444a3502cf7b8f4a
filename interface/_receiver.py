"""The reply receiver: takes this process's replies off the layer and hands them out.

One task per interface process reads its process channel ``interface.<id>!``. It has
three ways of waiting, cheapest wake-up first:

- **draining**: after a batch arrived, look again on the next loop iteration (the
  socket events queued meanwhile run first); while replies keep coming nobody has to
  wake this process up;
- **polling**: once a connection sent the application something it usually answers
  at once (a request, a connect, a WebSocket message), look once per loop iteration
  until the answer is in (at most the poll window), then *linger* a little longer: a
  client in a conversation sends its next message soon, and a process that is still
  running hears it without being woken. A worker whose answer is heard this way pays
  no wake-up either: its send finds no armed waiter and sends no datagram. Lingering
  adapts: a new message that comes within ``linger`` of the last answer doubles the
  next linger (up to ``linger``), one that comes later halves it, so sparse traffic
  soon stops paying for it; so does a turn during which this thread was preempted
  (another process wanted its core: spinning there would only delay that process).
  The poll window adapts too: polling that ends without any answer halves the next
  window (down to ``_MIN_WAIT``); an answer that comes within ``reply_wait`` of the
  message, heard while polling or just after, doubles it (up to ``reply_wait``). So a
  one-way stream of messages the application does not answer soon stops keeping the
  loop awake, and a window that shrank grows back once answers are quick again;
- **sleeping**: otherwise ``layer.receive_async`` sleeps on the layer's waiter socket.
  A connection that sends while the task sleeps *kicks* it (cancels that wait) so that
  polling starts. Kicks happen only on layers with ``receive_batch`` (the shm layer),
  whose ``receive_async`` takes a message only between its awaits and returns it
  without awaiting again, so a cancelled wait never loses one (a property of that
  layer, tested in tests/interface/test_receiver.py, not of the layer contract).

Every poll goes through the event loop (``sleep(0)`` runs every ready callback and a
zero-timeout ``epoll``), so no connection waits for the receiver, and a poll that found
nothing first yields the core (``sched_yield``) to any process waiting for it: a spin
never competes with the worker it waits for (the master's children share a session,
hence a scheduling group, which is where a yield reaches). On an idle server nothing
polls. Layers without ``receive_batch`` (no cheap non-blocking look) only sleep and
drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from typing import Any, Callable

__all__ = ["LINGER", "REPLY_WAIT", "ReplyReceiver"]

log = logging.getLogger("interface")

#: Seconds to poll for an answer that is due. A worker that was asleep needs a wake-up
#: (tens of µs) plus its own work; most answers of a quick worker come within 100 µs.
REPLY_WAIT = 200e-6
#: Longest linger after the due answers came in (seconds).
LINGER = 500e-6
#: Lingers shorter than this are not worth a loop iteration; halving stops at zero.
_MIN_LINGER = 20e-6
#: The shortest poll window: a loop iteration or two, in case the answer is that quick.
_MIN_WAIT = 25e-6
#: Replies taken per lock round.
BATCH = 64

_monotonic = time.monotonic
_sched_yield = os.sched_yield
_RUSAGE = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)  # the loop's own thread (Linux)


def _preemptions() -> int:
    """Times this thread was preempted so far (involuntary context switches)."""
    return resource.getrusage(_RUSAGE).ru_nivcsw


class ReplyReceiver:
    """Receives replies on ``channel`` and calls ``dispatch(channel, message)`` for each.

    Args:
        layer: the channel layer ("asyncio" extension; ``receive_batch`` used if present).
        channel: this process's channel, ``interface.<id>!``.
        dispatch: called with each ``(full channel name, message)``, in arrival order.
        reply_wait: seconds to poll for a due answer; 0 disables polling.
        linger: longest poll after the due answers arrived (adaptive, see above).
    """

    def __init__(self, layer: Any, channel: str, dispatch: Callable[[str, dict[str, Any]], None],
                 reply_wait: float = REPLY_WAIT, linger: float = LINGER) -> None:
        self.layer = layer
        self.channels = [channel]
        self.dispatch = dispatch
        self.reply_wait = reply_wait
        self.max_linger = linger
        self._batch: Callable[..., Any] | None = getattr(layer, "receive_batch", None)
        self._poll = self._batch is not None and reply_wait > 0
        self._due = 0  # sends since the last sleep whose answers have not come in
        self._wait = reply_wait  # the current poll window (adaptive)
        self._sent_at = 0.0
        self._heard = False  # an answer came since polling began
        self._missed_at = 0.0  # when the last unanswered poll's message was sent
        self._poll_until = 0.0
        self._linger = linger
        self._answered_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False
        self._kicked = False
        self._switches = 0

    def expect(self) -> None:
        """A message that is usually answered at once was just sent: poll for the answer."""
        if not self._poll:
            return
        now = _monotonic()
        if not self._due:
            # A new turn of a conversation. Lingering is worth it if a linger of
            # max_linger would have caught it, unless another process wanted this
            # core meanwhile (then polling only delays the worker or the client).
            switches = _preemptions()
            preempted, self._switches = switches != self._switches, switches
            if preempted:
                self._linger /= 2
            elif now - self._answered_at <= self.max_linger:
                self._linger = min(self.max_linger, max(self._linger * 2, _MIN_LINGER))
            else:
                self._linger /= 2
        self._due += 1
        self._sent_at = now
        self._poll_until = now + self._wait
        if self._sleeping and not self._kicked and self._task is not None:
            self._kicked = True
            self._task.cancel()

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """Start the receiving task on ``loop`` and return it (cancel it to stop)."""
        self._task = loop.create_task(self._run())
        return self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                if self._kicked:
                    self._kicked = False
                    task = self._task
                    assert task is not None
                    # The kick was one cancel(); a stop may have cancelled the task too.
                    if task.uncancel() == 0:
                        continue  # kicked by expect(): start polling
                raise

    async def _step(self) -> None:
        """Drain, poll or sleep once."""
        batch = self._batch
        if batch is not None:
            if self._take(batch):
                await asyncio.sleep(0)  # draining: socket events first, then look again
                return
            if self._poll and _monotonic() < self._poll_until:
                # Polling found nothing: let a process waiting for this core run first (the
                # worker that owes the answer, or the clients). On 2 busy cores an eager
                # poll ran ~3 empty loop turns per message, a third of the interface's CPU.
                _sched_yield()
                await asyncio.sleep(0)  # polling
                return
            if self._due and not self._heard:
                self._wait = max(self._wait / 2, _MIN_WAIT)  # polled for nothing
                self._missed_at = self._sent_at
            self._due = 0
            self._heard = False
            self._poll_until = 0.0
        self._sleeping = True
        try:
            channel, message = await self.layer.receive_async(self.channels, timeout=1.0)
        except ConnectionError as exc:
            self._sleeping = False  # before the back-off (the finally runs after it): no kicks
            # A broker that is down (the Redis layer): one line a second, no traceback.
            log.error("channel layer unreachable (%s); retrying in 1 s", exc)
            await asyncio.sleep(1.0)
            return
        except Exception:
            self._sleeping = False
            log.exception("receiving from the layer failed; retrying in 1 s")
            await asyncio.sleep(1.0)
            return
        finally:
            self._sleeping = False
        if channel is not None:
            if self._missed_at and _monotonic() - self._missed_at <= self.reply_wait:
                self._wait = min(self._wait * 2, self.reply_wait)  # a longer window would have heard it
            self._missed_at = 0.0
            self.dispatch(channel, message)
        if batch is None:
            self._drain_one_by_one()

    def _take(self, batch: Callable[..., Any]) -> bool:
        """Dispatch what ``batch`` (the shm layer's ``receive_batch``) finds; True if any."""
        try:
            found = batch(self.channels, BATCH)
        except Exception:
            log.exception("receiving from the layer failed")
            self._poll_until = 0.0  # no polling on a failing layer: receive_async backs off
            return False
        if not found:
            return False
        if self._due:
            self._heard = True
            self._wait = min(self._wait * 2, self.reply_wait)
            self._due = max(0, self._due - len(found))
            if not self._due:
                self._answered_at = now = _monotonic()
                self._poll_until = now + self._linger if self._linger >= _MIN_LINGER else 0.0
        dispatch = self.dispatch
        for channel, message in found:
            dispatch(channel, message)
        return True

    def _drain_one_by_one(self) -> None:
        # Layers without receive_batch: take what else is already there (bursts, broadcasts).
        for _ in range(BATCH):
            try:
                channel, message = self.layer.receive(self.channels, block=False)
            except Exception:
                log.exception("receiving from the layer failed")
                return
            if channel is None:
                return
            self.dispatch(channel, message)
