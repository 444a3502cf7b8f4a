"""The chat app's WebSocket routes (mounted under ``/chat`` by ``chatsite.routing``)."""
from channels.routing import route

from chat.consumers import ws_connect, ws_disconnect, ws_message

ROOM_PATH = r"^/(?P<room_name>[a-zA-Z0-9_-]+)/$"

websocket_routing = [
    route("websocket.connect", ws_connect, path=ROOM_PATH),
    route("websocket.receive", ws_message, path=ROOM_PATH),
    route("websocket.disconnect", ws_disconnect, path=ROOM_PATH),
]
