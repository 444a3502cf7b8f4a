"""Connection lifecycles as data: an Enum of states plus a transition table.

Theory of operation (after h11's ``_state.py``): every change of a connection's state
goes through :meth:`Lifecycle.fire`, which looks the pair ``(state, trigger)`` up in a
dict. A pair that is not in the table is a bug in the core, never the peer's fault, and
raises :class:`LocalProtocolError` from this one helper. Peer misbehaviour is handled
by firing a legal trigger (``"fail"``, ``"drop"``), so no path sets a state by hand and
the tables in ``_http.py`` / ``_ws.py`` are the whole story of a connection.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, Mapping, TypeVar

__all__ = ["Lifecycle", "LocalProtocolError"]

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
