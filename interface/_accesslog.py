"""The access log: one line per HTTP response and per WebSocket event, daphne's format.

``127.0.0.1:51234 - - [25/Nov/2026:10:41:07] "GET /chat/" 200 1532`` and, for
WebSockets, ``"WSCONNECTING /ws/"``, ``"WSCONNECT /ws/"``, ``"WSREJECT /ws/"``,
``"WSDISCONNECT /ws/"`` with status and size ``-`` (operations.md §4.2), so log
tooling written for daphne keeps working.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ._effects import AccessRecord

__all__ = ["AccessLog", "format_record"]


def format_record(record: AccessRecord, now: float | None = None) -> str:
    """One log line (with its newline) for ``record``.

    Args:
        record: what happened.
        now: epoch seconds of the event (default: now).
    """
    client: Any = record.client
    host = f"{client[0]}:{client[1]}" if client else "-"
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(now if now is not None else time.time()))
    status = "-" if record.status is None else str(record.status)
    length = "-" if record.length is None else str(record.length)
    return f'{host} - - [{stamp}] "{record.request}" {status} {length}\n'


class AccessLog:
    """Writes access records to a file, stdout ("-"), or nowhere (None).

    Args:
        target: a path (opened for append, line-buffered), "-" for stdout, or None.

    Raises:
        OSError: the file cannot be opened.
    """

    def __init__(self, target: str | None) -> None:
        self._owned = False
        self._stream: TextIO | None
        if target is None:
            self._stream = None
        elif target == "-":
            self._stream = sys.stdout
        else:
            self._stream = open(target, "a", buffering=1, encoding="utf-8")
            self._owned = True

    @property
    def enabled(self) -> bool:
        """Whether records are written at all."""
        return self._stream is not None

    def write(self, record: AccessRecord) -> None:
        """Write one record (errors writing the log never break serving)."""
        if self._stream is None:
            return
        try:
            self._stream.write(format_record(record))
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Close the file if this object opened it."""
        if self._owned and self._stream is not None:
            self._stream.close()
        self._stream = None
