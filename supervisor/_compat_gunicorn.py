"""The only door to gunicorn: the few stable helpers we reuse (operations.md §1.4).

gunicorn is a dependency for these helpers and for its setting names, never for its
arbiter or config machinery. Importing them here, and nowhere else, keeps the surface
we rely on in one place; ``tests/supervisor/test_compat_gunicorn.py`` asserts that each
name and signature still exists, so a gunicorn upgrade that breaks us fails loudly.
"""

from __future__ import annotations

from gunicorn.pidfile import Pidfile
from gunicorn.systemd import SD_LISTEN_FDS_START, listen_fds
from gunicorn.util import close_on_exec, parse_address

__all__ = ["Pidfile", "SD_LISTEN_FDS_START", "close_on_exec", "listen_fds", "parse_address"]
