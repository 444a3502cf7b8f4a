"""``channels.test``: the Channels 1.1 name of :mod:`channels.tests` (same objects)."""

from ..tests import ChannelTestCase, ChannelTestCaseMixin, Client, HttpClient, WSClient, apply_routes

__all__ = ["ChannelTestCase", "ChannelTestCaseMixin", "Client", "HttpClient", "WSClient", "apply_routes"]
