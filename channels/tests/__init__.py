"""Test helpers of the Channels 1.x API: run consumers in-process against an in-memory layer.

::

    from channels.tests import ChannelTestCase, HttpClient, apply_routes

    class ChatTests(ChannelTestCase):
        def test_echo(self):
            client = HttpClient()
            client.send_and_consume("websocket.connect", path="/echo/")
            client.send_and_consume("websocket.receive", text="hi", path="/echo/")
            self.assertEqual(client.receive(json=False), {"text": "hi"})
"""

from .base import ChannelTestCase, ChannelTestCaseMixin, Client, apply_routes
from .http import HttpClient, WSClient

__all__ = ["ChannelTestCase", "ChannelTestCaseMixin", "Client", "HttpClient", "WSClient", "apply_routes"]
