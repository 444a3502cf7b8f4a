"""The asyncio transport: sockets, timers and the channel layer around the sans-I/O cores.

This is the only module of ``interface`` that touches an event loop. One process runs
one loop (:func:`run_interface`) serving listening sockets it was handed (several
processes may accept on the same port). Per TCP connection, a :class:`_Connection`
protocol feeds bytes to its core (``_http.HTTPConnection``, then, after an upgrade,
``_ws.WebSocketConnection``) and carries out what the core queued: bytes to write,
layer sends with their ChannelFull policy (``_effects.OnFull``), access-log lines, and
one timer at the core's next deadline.

Replies come back on this process's own channel ``interface.<random>!``: one task
(``_receiver.ReplyReceiver``: sleeps on ``layer.receive_async``, no thread per
connection, polls only briefly while an answer is due) hands each message to the
connection named by the part after the ``!`` (``<conn>`` or ``<conn>.<request>``).

Policy choices, as in h11's example server:

- accept errors EMFILE/ENFILE/ENOBUFS/ENOMEM mean "overloaded": log, stop accepting
  for 100 ms, continue (trio's serve_listeners); accepting also pauses at
  ``max_connections``;
- a send the layer refuses with ChannelFull (or cannot make: layer unreachable) is
  retried only where asgi1.md §5 says so, and while a connection has a send waiting,
  its socket is not read (backpressure); a message too large for the layer is refused
  at once (413 or 431 / close 1009), and so is one that fails for any other reason
  (500 / close 1011: a bug or an unencodable message, logged with its traceback);
- SIGTERM drains (stop accepting, in-flight HTTP finishes within graceful_timeout,
  WebSockets close 1001 with a ``websocket.disconnect``); SIGINT/SIGQUIT stop fast;
- the layer epoch is checked every second: a new epoch means the layer lost its
  data, so every socket is closed (WebSockets with 1012) and clients reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import gc
import logging
import resource
import signal
import socket
import time
from typing import Any, Callable, Iterable

from shmlayer.contract import ChannelFull, MessageTooLarge, random_suffix

from ._accesslog import AccessLog
from ._effects import AccessRecord, CancelSends, ConnInfo, LayerSend, OnFull, Refusal, Upgrade
from ._http import HTTPConnection
from ._options import Options
from ._receiver import ReplyReceiver
from ._ws import WebSocketConnection

__all__ = ["InterfaceServer", "run_interface"]

log = logging.getLogger("interface")

_OVERLOAD_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
#: Channels whose messages the application usually answers at once (the receiver polls).
_ANSWERED = frozenset(("http.request", "websocket.connect", "websocket.receive"))
#: Bytes read from a socket at once (asyncio's own read size).
READ_SIZE = 256 * 1024
#: Outgoing bytes buffered for one slow client before it is dropped.
MAX_WRITE_BUFFER = 16 * 1024 * 1024


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise RLIMIT_NOFILE to %s: %s", target, exc)
    return soft


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2 and isinstance(value[0], str):
        return (value[0], int(value[1]))
    return None


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: bytes to its core, the core's effects to the world.

    A buffered protocol: the transport reads into the server's one read buffer
    (``recv_into``) and the bytes read are copied out. A plain Protocol gets
    ``sock.recv(256 KiB)``, which allocates and shrinks 256 KiB per read: about 14 µs
    of a small message's round trip here, more than the copy costs.
    """

    def __init__(self, server: InterfaceServer, cid: str) -> None:
        self.server = server
        self.cid = cid
        self.core: Any = None
        self.transport: asyncio.Transport | None = None
        self._pending: collections.deque[LayerSend] = collections.deque()
        self._pending_since = 0.0
        self._retry_handle: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._reading = True
        self._write_paused = False
        self._gone = False

    # -- asyncio.BufferedProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[union-attr]
        info = ConnInfo(client=_address(transport.get_extra_info("peername")),
                        server=_address(transport.get_extra_info("sockname")),
                        reply_prefix=self.server.prefix + self.cid)
        self.core = HTTPConnection(info, self.server.options)
        self.server.connections[self.cid] = self
        self.pump()

    def get_buffer(self, sizehint: int) -> memoryview:
        # Shared by every connection: the loop calls get_buffer, recv_into and
        # buffer_updated back to back, and buffer_updated copies what it needs.
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.server.read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Feed bytes read from the socket to the core and carry out what it queued."""
        self.core.receive_data(data)
        self.pump()

    def eof_received(self) -> bool:
        self.core.receive_data(b"")
        self.pump()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gone = True
        if self.core is not None:
            self.core.connection_lost()
            self.pump()
        self._cancel_timers()
        self.server.forget(self.cid)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # -- driving the core ---------------------------------------------------------------------

    def handle_reply(self, local: str, message: dict[str, Any]) -> None:
        """A reply for this connection arrived on the process channel."""
        self.core.handle_reply(local, message)
        self.pump()

    def shutdown(self, code: int = 1001) -> None:
        """Graceful stop: HTTP finishes its request, WebSockets close with ``code``."""
        self.core.shutdown(code)
        self.pump()

    def abort_core(self, code: int = 1012) -> None:
        """Stop now: HTTP answers 503 or is cut, WebSockets close with ``code``."""
        self.core.abort(code)
        self.pump()

    @property
    def busy(self) -> bool:
        return self.core is not None and self.core.busy

    def pump(self) -> None:
        """Carry out everything the core queued, then sync reading and the timer."""
        core = self.core
        effects = core.pop_effects()
        while effects:
            for effect in effects:
                kind = type(effect)
                if kind is LayerSend:
                    self._send(effect)
                elif kind is AccessRecord:
                    self.server.access_log.write(effect)
                elif kind is Upgrade:
                    self._upgrade(effect)
                elif kind is CancelSends:
                    self._cancel_sends(effect.channel)
            core = self.core  # an Upgrade replaced it
            effects = core.pop_effects()
        transport = self.transport
        if transport is None:
            return
        data = core.pop_data()
        if data and not self._gone:
            transport.write(data)
            # Over the high-water mark the transport called pause_writing(): only then
            # can the buffer be over the limit.
            if self._write_paused and transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                log.warning("client %s reads too slowly; dropping the connection", core.info.client)
                transport.abort()
                return
        if core.closed:
            self._cancel_timers()
            if not self._gone:
                transport.close()
            return
        self._update_reading()
        self._arm(core.deadline)

    def _upgrade(self, upgrade: Upgrade) -> None:
        http_core = self.core
        lifetime = self.server.options.websocket_lifetime(self.server.group_expiry)
        self.core = WebSocketConnection(http_core.info, self.server.options, upgrade.request, upgrade.trailing,
                                        lifetime=lifetime)

    # -- layer sends with ChannelFull policies ---------------------------------------------------

    def _send(self, send: LayerSend) -> None:
        if self._pending:
            self._pending.append(send)
            return
        refusal = self._try_send(send)
        if refusal is None:
            return
        if refusal is Refusal.FULL and send.on_full is OnFull.RETRY:
            self._pending.append(send)
            self._pending_since = time.monotonic()
            self._schedule_retry(0.01)
        else:
            self._refuse(send, refusal)

    def _refuse(self, send: LayerSend, refusal: Refusal) -> None:
        # DROP (the disconnect notices) drops whatever the refusal; the rest go to the core.
        if send.on_full is OnFull.DROP:
            log.debug("dropping %s message (%s)", send.channel, refusal.value)
        else:
            self.core.send_refused(send, refusal)

    def _try_send(self, send: LayerSend, retrying: bool = False) -> Refusal | None:
        """Send once; None if it went, else why not.

        ``ConnectionError`` (a layer that cannot be reached, e.g. Redis down) counts as
        FULL: retrying may help, and the client gets the same 503/1013. Anything but
        ChannelFull, MessageTooLarge and ConnectionError is a bug or a message the layer
        cannot encode: logged with its traceback once, never retried (FAILED).
        """
        try:
            self.server.layer.send(send.channel, send.message)
        except ChannelFull:
            return Refusal.FULL
        except MessageTooLarge:
            log.warning("message for %s too large for the layer", send.channel)
            return Refusal.TOO_LARGE
        except ConnectionError as exc:
            if not retrying:
                log.error("channel layer unreachable sending to %s: %s", send.channel, exc)
            return Refusal.FULL
        except Exception:
            log.exception("layer send to %s failed", send.channel)
            return Refusal.FAILED
        # Outside the try: a failure here must not make a sent message look unsent.
        if send.channel in _ANSWERED:
            self.server.receiver.expect()
        return None

    def _cancel_sends(self, channel: str) -> None:
        kept = collections.deque(send for send in self._pending if send.channel != channel)
        if len(kept) == len(self._pending):
            return
        if kept and kept[0] is not self._pending[0]:
            self._pending_since = time.monotonic()  # a new head waits from now
        self._pending = kept
        if not kept and self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None

    def _schedule_retry(self, delay: float) -> None:
        self._retry_handle = asyncio.get_running_loop().call_later(delay, self._retry, delay)
        self._update_reading()

    def _retry(self, delay: float) -> None:
        """Send what waits for room, in order; only a RETRY send at the head waits longer."""
        self._retry_handle = None
        while self._pending:
            head = self._pending[0]
            refusal = self._try_send(head, retrying=True)
            if (refusal is Refusal.FULL and head.on_full is OnFull.RETRY
                    and time.monotonic() - self._pending_since < head.retry_for):
                self._schedule_retry(min(delay * 2, 0.1))
                return
            self._pending.popleft()
            self._pending_since = time.monotonic()
            if refusal is not None:
                if head.on_full is not OnFull.DROP:
                    # What queued behind a refused message must not reach the application without it.
                    self._pending.clear()
                self._refuse(head, refusal)
        self.pump()

    # -- flow control and timers --------------------------------------------------------------------

    def _update_reading(self) -> None:
        want = self.core.wants_read and not self._pending and not self._write_paused
        if want == self._reading:
            return
        transport = self.transport
        if transport is None or self._gone or transport.is_closing():
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _arm(self, deadline: float | None) -> None:
        # Deadlines mostly move later (activity): keep an earlier timer (``_timer_at`` is
        # set exactly while ``_timer`` is) and re-arm when it fires.
        timer_at = self._timer_at
        if timer_at is not None and deadline is not None and timer_at <= deadline:
            return
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.core.tick()
        self.pump()

    def _cancel_timers(self) -> None:
        # Sends still waiting for room in the layer keep their retry timer after the socket
        # closed: a websocket.receive must still reach the app, and the disconnect behind it.
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None


class InterfaceServer:
    """One interface process: accept loop, connections, the layer receive loop, timers.

    Args:
        layer: the channel layer (must list the "asyncio" extension).
        sockets: listening sockets (TCP or unix) to accept on.
        options: server options.
        booted: called once with the process channel prefix when serving.
        heartbeat: called every second from a loop task.
    """

    def __init__(self, layer: Any, sockets: Iterable[socket.socket], options: Options | None = None,
                 booted: Callable[..., Any] | None = None, heartbeat: Callable[[], Any] | None = None) -> None:
        self.layer = layer
        self.sockets = list(sockets)
        self.options = options or Options()
        self.booted = booted
        self.heartbeat = heartbeat
        self.prefix = "interface." + random_suffix(10) + "!"
        self.group_expiry = getattr(layer, "group_expiry", 86400)
        self.connections: dict[str, _Connection] = {}
        self.access_log = AccessLog(self.options.access_log)
        self.read_buffer = memoryview(bytearray(READ_SIZE))
        self._next_cid = 0
        self._accepting: set[int] = set()
        self._accept_paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_mode = "graceful"
        self._epoch: int | None = None
        self._idle: asyncio.Event | None = None
        self.receiver = ReplyReceiver(layer, self.prefix, self._dispatch)

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self, signal_handlers: bool = True) -> int:
        """Serve until :meth:`stop` (or a signal); return the exit code.

        Raises:
            RuntimeError: the layer has no "asyncio" extension.
        """
        if "asyncio" not in getattr(self.layer, "extensions", ()):
            raise RuntimeError(f"channel layer {self.layer!r} lacks the 'asyncio' extension the interface needs")
        loop = self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        raise_nofile_limit()
        if signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.stop, True)
            loop.add_signal_handler(signal.SIGINT, self.stop, False)
            loop.add_signal_handler(signal.SIGQUIT, self.stop, False)
        self._epoch = self._read_epoch()
        for sock in self.sockets:
            sock.setblocking(False)
            self._start_accepting(sock)
        receiver = self.receiver.start(loop)
        ticker = loop.create_task(self._tick_loop())
        log.info("interface %s serving %d socket(s)", self.prefix, len(self.sockets))
        if self.booted is not None:
            self.booted(self.prefix)
        try:
            await self._stop.wait()
            await self._drain(self._stop_mode == "graceful")
        finally:
            for sock in self.sockets:
                self._stop_accepting(sock)
            ticker.cancel()
            receiver.cancel()
            await asyncio.gather(receiver, ticker, return_exceptions=True)
            for conn in list(self.connections.values()):
                if conn.transport is not None:
                    conn.transport.abort()
            self.access_log.close()
        log.info("interface %s stopped", self.prefix)
        return 0

    def stop(self, graceful: bool = True) -> None:
        """Ask the server to stop (thread-safe); ``graceful`` drains first."""
        loop = self._loop
        if loop is None or self._stop is None:
            return
        self._stop_mode = "graceful" if graceful else "fast"

        def _set() -> None:
            assert self._stop is not None
            if self._stop.is_set() and not graceful:
                # A second, fast stop during a drain cuts it short.
                self._stop_mode = "fast"
                if self._idle is not None:
                    self._idle.set()
            self._stop.set()

        if _running_in(loop):
            _set()
        else:
            loop.call_soon_threadsafe(_set)

    async def _drain(self, graceful: bool) -> None:
        for sock in self.sockets:
            self._stop_accepting(sock)
        assert self._idle is not None
        timeout = self.options.graceful_timeout if graceful else 1.0
        log.info("interface %s draining %d connection(s) (%s)", self.prefix, len(self.connections),
                 "graceful" if graceful else "fast")
        for conn in list(self.connections.values()):
            if graceful:
                conn.shutdown(1001)
            else:
                conn.abort_core(1001)
        if self.connections:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("%d connection(s) still open after %ss; closing them", len(self.connections), timeout)
        for conn in list(self.connections.values()):
            conn.abort_core(1001)

    def forget(self, cid: str) -> None:
        """A connection closed: drop it, maybe resume accepting."""
        self.connections.pop(cid, None)
        if self._accept_paused and len(self.connections) < self.options.max_connections \
                and self._stop is not None and not self._stop.is_set():
            self._accept_paused = False
            for sock in self.sockets:
                self._start_accepting(sock)
        if not self.connections and self._idle is not None:
            self._idle.set()

    # -- accepting ------------------------------------------------------------------------------------

    def _start_accepting(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd >= 0 and fd not in self._accepting and self._loop is not None:
            self._accepting.add(fd)
            self._loop.add_reader(fd, self._accept, sock)

    def _stop_accepting(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd in self._accepting and self._loop is not None:
            self._accepting.discard(fd)
            self._loop.remove_reader(fd)

    def _accept(self, sock: socket.socket) -> None:
        assert self._loop is not None
        for _ in range(64):
            if len(self.connections) >= self.options.max_connections:
                log.warning("max_connections (%d) reached; pausing accept", self.options.max_connections)
                self._accept_paused = True
                for listener in self.sockets:
                    self._stop_accepting(listener)
                return
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OVERLOAD_ERRNOS:
                    # Out of fds/buffers: log, back off 100 ms, continue (trio's serve_listeners).
                    log.error("accept() failed (%s); pausing accept for 100 ms", exc)
                    self._stop_accepting(sock)
                    self._loop.call_later(0.1, self._resume_after_overload, sock)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                log.error("accept() failed: %s", exc)
                return
            conn.setblocking(False)
            self._next_cid += 1
            cid = str(self._next_cid)
            self._loop.create_task(self._connect(conn, cid))

    def _resume_after_overload(self, sock: socket.socket) -> None:
        if self._stop is not None and not self._stop.is_set() and not self._accept_paused:
            self._start_accepting(sock)

    async def _connect(self, conn: socket.socket, cid: str) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: _Connection(self, cid), conn)
        except OSError as exc:
            log.debug("connection %s failed before start: %s", cid, exc)
            conn.close()

    # -- the layer ------------------------------------------------------------------------------------

    def _dispatch(self, channel: str, message: dict[str, Any]) -> None:
        local = channel[len(self.prefix):]
        conn = self.connections.get(local.partition(".")[0])
        if conn is None:
            log.debug("reply for closed connection %s dropped", channel)
            return
        try:
            conn.handle_reply(local, message)
        except Exception:
            log.exception("handling a reply on %s failed; closing the connection", channel)
            if conn.transport is not None:
                conn.transport.abort()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.heartbeat is not None:
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("heartbeat failed")
            epoch = self._read_epoch(check=True)
            if epoch is not None and self._epoch is not None and epoch != self._epoch:
                log.warning("channel layer epoch changed (%s -> %s): it lost its data; closing %d connection(s)",
                            self._epoch, epoch, len(self.connections))
                self._epoch = epoch
                for conn in list(self.connections.values()):
                    conn.abort_core(1012)

    def _read_epoch(self, check: bool = False) -> int | None:
        try:
            if check and hasattr(self.layer, "check_epoch"):
                return int(self.layer.check_epoch())
            return int(self.layer.epoch) if hasattr(self.layer, "epoch") else None
        except ConnectionError as exc:
            log.error("reading the layer epoch failed: %s", exc)
        except Exception:
            log.exception("reading the layer epoch failed")
        return None


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run_interface(layer: Any, sockets: Iterable[socket.socket], options: Options | None = None,
                  booted: Callable[..., Any] | None = None, heartbeat: Callable[[], Any] | None = None) -> int:
    """Serve ``sockets`` in this process until SIGTERM/SIGINT/SIGQUIT; return an exit code.

    Args:
        layer: the channel layer (needs the "asyncio" extension).
        sockets: listening sockets, already bound and listening.
        options: server options (default ``Options()``).
        booted: called once serving, with the process channel prefix (``interface.<id>!``).
        heartbeat: called every second from the event loop.

    Returns:
        0 after a clean stop, 1 if serving failed.
    """
    server = InterfaceServer(layer, sockets, options, booted=booted, heartbeat=heartbeat)
    # Everything loaded so far lives as long as the process: keep it out of full
    # collections so their pauses stay short under load.
    gc.freeze()
    try:
        return asyncio.run(server.serve())
    except Exception:
        log.exception("interface server failed")
        return 1
