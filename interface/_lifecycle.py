"""Connection lifecycles as data: an Enum of states plus a transition table.

Theory of operation (after h11's ``_state.py``): every change of a connection's state
goes through :meth:`Lifecycle.fire`, which looks the pair ``(state, trigger)`` up in a
dict. A pair that is not in the table is a bug in the core, never the peer's fault, and
raises :class:`LocalProtocolError` from this one helper. Peer misbehaviour is handled
by firing a legal trigger (``"fail"``, ``"drop"``), so no path sets a state by hand and
the tables in ``_http.py`` / ``_ws.py`` are the whole story of a connection.

:class:`ConnectionCore` is the part both sans-I/O cores share: the lifecycle, the
outgoing byte buffer and effect queue, and the read-only view the transport polls.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Generic, Mapping, TypeVar

__all__ = ["ConnectionCore", "Lifecycle", "LocalProtocolError"]

S = TypeVar("S", bound=Enum)


class LocalProtocolError(Exception):
    """The core tried a transition its table does not allow: a bug, not a peer error."""


class Lifecycle(Generic[S]):
    """One connection's current state, moved only through a transition table.

    Args:
        table: ``{(state, trigger): next_state}``.
        initial: the starting state.
    """

    __slots__ = ("state", "_table")

    def __init__(self, table: Mapping[tuple[S, str], S], initial: S) -> None:
        self._table = table
        self.state = initial

    def can(self, trigger: str) -> bool:
        """Whether ``trigger`` is legal in the current state."""
        return (self.state, trigger) in self._table

    def fire(self, trigger: str) -> S:
        """Apply ``trigger`` and return the new state.

        Raises:
            LocalProtocolError: ``(state, trigger)`` is not in the table.
        """
        try:
            self.state = self._table[(self.state, trigger)]
        except KeyError:
            raise LocalProtocolError(f"illegal transition {trigger!r} from {self.state.name}") from None
        return self.state


class ConnectionCore(Generic[S]):
    """Base of the HTTP and WebSocket cores: lifecycle plus what the transport reads.

    Subclasses write bytes to ``self._out``, append effects to ``self._effects`` and keep
    ``self._deadline`` current; the transport polls the properties below.

    Args:
        table: the subclass's transition table.
        initial: the starting state.
        final: the state in which the socket is to be closed.
    """

    def __init__(self, table: Mapping[tuple[S, str], S], initial: S, final: S) -> None:
        self._life: Lifecycle[S] = Lifecycle(table, initial)
        self._final = final
        self._out = bytearray()
        self._effects: list[Any] = []
        self._deadline: float | None = None

    @property
    def state(self) -> S:
        """The lifecycle state."""
        return self._life.state

    @property
    def closed(self) -> bool:
        """True once the socket should be closed (after writing ``pop_data()``)."""
        return self._life.state is self._final

    @property
    def deadline(self) -> float | None:
        """Clock time at which ``tick()`` has something to do, or None."""
        return self._deadline

    def pop_data(self) -> bytes:
        """Bytes to write to the socket, in order; clears the buffer."""
        out = self._out
        if not out:
            return b""
        data = bytes(out)
        out.clear()
        return data

    def pop_effects(self) -> list[Any]:
        """Queued effects (see ``_effects.py``), in order; clears the queue."""
        effects = self._effects
        if not effects:
            return effects  # empty: the caller only iterates; no new list per call
        self._effects = []
        return effects
