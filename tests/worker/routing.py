"""Consumers that the worker process tests route (SHMCHANNELS_TEST_ROUTING points here)."""

from __future__ import annotations

import os
import time

from channels import Channel
from channels.routing import route


def echo(message):
    """Reply on ``reply_to`` with the message number and this worker's pid."""
    Channel(message["reply_to"]).send({"n": message["n"], "pid": os.getpid()})


def slow(message):
    """Say "started" at once, sleep ``sleep`` seconds, then say "finished" (held send)."""
    Channel(message["reply_to"]).send({"started": message["n"], "pid": os.getpid()}, immediately=True)
    time.sleep(message.get("sleep", 1.0))
    Channel(message["reply_to"]).send({"finished": message["n"], "pid": os.getpid()})


def crash(message):
    """Fail; the worker must log it and go on."""
    raise RuntimeError(f"crash consumer asked to fail ({message.get('n')})")


channel_routing = [
    route("test.echo", echo),
    route("test.slow", slow),
    route("test.crash", crash),
]

