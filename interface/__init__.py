"""interface: the HTTP/1.1 + WebSocket protocol server (h11 + wsproto) speaking ASGI 1 over a channel layer.

The sans-I/O cores (``_http``, ``_ws``, ``_asgi1``) turn bytes into ASGI 1 messages and
replies back into bytes; ``server`` is the asyncio transport around them; ``cli`` is
the standalone ``shmchannels-interface`` command. Django is never imported here.
"""

from __future__ import annotations

from ._options import Options
from .server import InterfaceServer, run_interface

__all__ = ["InterfaceServer", "Options", "run_interface"]
