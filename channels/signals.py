"""Signals a worker sends around each consumer, as in Channels 1.x.

- ``consumer_started(sender, environ)``: before a consumer runs; held sends start here.
- ``consumer_finished(sender)``: after it returned or raised; held sends are flushed here
  and old database connections closed.
- ``worker_ready(sender)``: a worker is about to enter its receive loop.
- ``worker_process_ready(sender)``: a worker process finished booting (once per process,
  before its threads start).
"""

from __future__ import annotations

from django.db import close_old_connections
from django.dispatch import Signal

__all__ = ["consumer_finished", "consumer_started", "worker_process_ready", "worker_ready"]

consumer_started = Signal()
consumer_finished = Signal()
worker_ready = Signal()
worker_process_ready = Signal()

# A consumer is like a request: connections that went stale or outlived CONN_MAX_AGE are
# closed around it, as Django does around each HTTP request (Channels 1.x did the same).
consumer_started.connect(close_old_connections, dispatch_uid="channels.close_old_connections.started")
consumer_finished.connect(close_old_connections, dispatch_uid="channels.close_old_connections.finished")
