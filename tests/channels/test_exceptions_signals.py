"""channels.exceptions and channels.signals: the 1.x names and behaviours."""

from __future__ import annotations

import pytest

from channels import exceptions, signals
from channels.message import Message, pending_message_store

from .helpers import drain, make_wrapper


def test_names_exist():
    for name in ("ConsumeLater", "DenyConnection", "ChannelSocketException", "RequestAborted",
                 "RequestTimeout", "ResponseLater", "SendNotAvailableOnDemultiplexer"):
        assert issubclass(getattr(exceptions, name), Exception)
    for name in ("consumer_started", "consumer_finished", "worker_ready", "worker_process_ready"):
        assert hasattr(getattr(signals, name), "send")


def test_channel_socket_exception_run_closes():
    wrapper = make_wrapper()
    message = Message({"reply_channel": "t.x!1"}, "websocket.receive", wrapper)
    exceptions.ChannelSocketException().run(message)
    exceptions.WebsocketCloseException(4001).run(message)
    assert drain(wrapper.channel_layer, "t.x!") == [{"close": True}, {"close": 4001}]
    with pytest.raises(ValueError, match="1000 or 3000-4999"):
        exceptions.WebsocketCloseException(1006)


def test_signals_drive_the_held_send_store():
    signals.consumer_started.send(sender=None, environ={})
    assert pending_message_store.holding
    signals.consumer_finished.send(sender=None)
    assert not pending_message_store.holding
