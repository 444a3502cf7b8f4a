"""channels.tests: ChannelTestCase, Client/HttpClient and apply_routes, on the tutorial."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test.utils import override_settings

from channels import Channel, Group
from channels.asgi import channel_layers
from channels.layers.inmemory import InMemoryChannelLayer
from channels.routing import route
from channels.tests import ChannelTestCase, Client, HttpClient, WSClient, apply_routes
from tests.djangoproject.chatapp.models import ChatMessage


def shout(message):
    message.reply_channel.send({"text": message["text"].upper()})


@pytest.mark.usefixtures("db")
class TutorialTests(ChannelTestCase):
    def test_layer_is_swapped_for_a_fresh_in_memory_one(self):
        layer = channel_layers["default"].channel_layer
        assert type(layer) is InMemoryChannelLayer
        old = self._old_layers["default"]
        assert old is None or old.channel_layer is not layer
        Channel("tests.swap").send({"n": 1})
        assert self.get_next_message("tests.swap", require=True).content == {"n": 1}
        assert self.get_next_message("tests.swap") is None
        with pytest.raises(AssertionError, match="Expected a message"):
            self.get_next_message("tests.swap", require=True)

    def test_echo_with_http_client(self):
        client = HttpClient()
        client.send_and_consume("websocket.connect", path="/echo/")
        client.send_and_consume("websocket.receive", text="hello world", path="/echo/")
        assert client.receive(json=False) == {"text": "hello world"}
        assert client.receive() is None

    def test_models_section_and_json_receive(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/kitchen/")
        client.send_and_consume("websocket.receive", text={"x": 1}, path="/kitchen/")
        client.consume("chat-messages")
        assert ChatMessage.objects.get(room="kitchen").message == '{"x": 1}'
        assert client.receive() == {"x": 1}

    def test_auth_section_with_force_login(self):
        client = HttpClient()
        client.force_login(User.objects.create(username="zed"))
        client.send_and_consume("websocket.connect", path="/auth/")
        assert channel_layers["default"].group_channels("chat-z") == [client.reply_channel]
        client.send_and_consume("websocket.receive", text="z!", path="/auth/")
        assert client.receive(json=False) == {"text": "z!"}

    @override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    def test_login_with_credentials(self):
        user = User(username="yan")
        user.set_password("pw")
        user.save()
        client = HttpClient()
        assert not client.login(username="yan", password="wrong")
        assert client.login(username="yan", password="pw")
        client.send_and_consume("websocket.connect", path="/auth/")

    def test_ordered_client_under_enforce_ordering(self):
        client = HttpClient(ordered=True)
        client.send_and_consume("websocket.connect", path="/ordering/")
        for text in ("a", "b"):
            client.send_and_consume("websocket.receive", text=text, path="/ordering/")
        assert [client.receive(json=False)["text"] for _ in range(2)] == ["1: a", "2: b"]

    def test_rejected_connection_is_reported(self):
        client = HttpClient()
        client.set_header("origin", "http://evil.example")
        with pytest.raises(AssertionError, match="Connection rejected"):
            client.send_and_consume("websocket.connect", path="/secure/")

    def test_plain_client_and_errors(self):
        client = Client()
        assert client.get_consumer_by_channel("chat-messages").__name__ == "msg_consumer"
        with pytest.raises(AssertionError, match="No message"):
            client.consume("nothing.here")
        assert client.consume("nothing.here", fail_on_none=False) is None
        client.send("unrouted.channel", {"a": 1})
        with pytest.raises(AssertionError, match="Can't find a consumer"):
            client.consume("unrouted.channel")

    @apply_routes([route("websocket.receive", shout)])
    def test_apply_routes_as_decorator(self):
        client = Client()
        client.send_and_consume("websocket.receive", {"text": "hi"})
        assert client.receive() == {"text": "HI"}

    def test_apply_routes_as_context_manager_restores(self):
        with apply_routes([[route("websocket.receive", shout)]]):
            assert channel_layers["default"].router.channels == {"websocket.receive"}
        assert "chat-messages" in channel_layers["default"].router.channels

    def test_group_send_held_inside_consumer_flushes(self):
        client = HttpClient()
        client.send_and_consume("websocket.connect", path="/groups/")
        Group("chat").send({"text": "outside"})
        assert client.receive(json=False) == {"text": "outside"}


def test_channels_test_is_the_1_1_name():
    import channels.test
    import channels.tests

    assert channels.test.WSClient is channels.tests.HttpClient
    assert channels.test.ChannelTestCase is ChannelTestCase
