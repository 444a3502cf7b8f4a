"""worker._run: logging setup and the layer checks run_worker does before booting."""

from __future__ import annotations

import io
import logging

import pytest

from tests.worker.helpers import make_wrapper

from channels.asgi import ChannelLayerWrapper
from channels.layers.inmemory import InMemoryChannelLayer
from worker._run import is_process_local, setup_logging


@pytest.fixture
def clean_channels_logger():
    logger = logging.getLogger("django.channels")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers = []
    try:
        yield logger
    finally:
        logger.handlers, logger.propagate, logger.level = saved


def test_child_of_a_configured_master_logs_each_line_once(clean_channels_logger):
    root = logging.getLogger()
    stream = io.StringIO()
    master_handler = logging.StreamHandler(stream)
    root.addHandler(master_handler)
    try:
        setup_logging(2)
        setup_logging(2)  # idempotent
        logging.getLogger("django.channels.worker").info("one line")
        logging.getLogger("django.channels.worker").debug("debug line")
    finally:
        root.removeHandler(master_handler)
    assert stream.getvalue().count("one line") == 1
    assert "debug line" in stream.getvalue()
    assert clean_channels_logger.propagate is False


def test_verbosity_sets_the_level_and_force_adds_a_stderr_handler(clean_channels_logger):
    setup_logging(0, force=True)
    assert clean_channels_logger.level == logging.WARNING
    assert [getattr(h, "_shmchannels_worker", False) for h in clean_channels_logger.handlers] == [True]
    setup_logging(1, force=True)
    assert clean_channels_logger.level == logging.INFO and len(clean_channels_logger.handlers) == 1


def test_a_project_logging_config_is_kept(clean_channels_logger):
    own = logging.StreamHandler(io.StringIO())
    clean_channels_logger.addHandler(own)
    setup_logging(1)
    assert clean_channels_logger.handlers == [own]


def test_in_memory_layer_is_process_local():
    assert is_process_local(InMemoryChannelLayer())
    assert is_process_local(make_wrapper([]).channel_layer)

    class Marked:
        process_local = True

    assert is_process_local(Marked())
    assert not is_process_local(ChannelLayerWrapper(object(), "x", []).channel_layer)
