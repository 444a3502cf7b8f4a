"""Channels 4 application: Django views over HTTP, echo and a broadcast room over WebSocket."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sites.peer_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)


class Room(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add("bench-room", self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard("bench-room", self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send("bench-room", {"type": "room.message", "text": text_data})

    async def room_message(self, event):
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": URLRouter([path("echo/", Echo.as_asgi()), path("room/", Room.as_asgi())]),
    }
)
