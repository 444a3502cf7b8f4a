"""Project-level channel routing: the chat app's routes under ``/chat``.

``include(..., path=r"^/chat")`` strips the matched ``/chat`` prefix, so the chat app's
own routes match the rest of the path (``/lobby/``), as in the Channels 1.x docs.
"""
from channels.routing import include, route

from chat.consumers import msg_consumer, ws_disconnect_unrouted, ws_reject
from chat.routing import websocket_routing as chat_routing

channel_routing = [
    include(chat_routing, path=r"^/chat"),
    # The tutorial's "Models" section: a worker-side queue that saves and broadcasts.
    route("chat-messages", msg_consumer),
    # Anything else that tries to open a socket is refused instead of left hanging.
    route("websocket.connect", ws_reject),
    route("websocket.disconnect", ws_disconnect_unrouted),
]
