"""Every consumer of the Channels 1.x "Getting Started" page, verbatim, routed side by side.

Each section of the page redefines ``ws_add``/``ws_message``/...; here each gets a section
prefix (``groups_ws_add``) and its own path so they can all be routed at once. The bodies
and decorators are the page's, unchanged. Paths (WebSocket unless said otherwise):

=========================  ============================================================
``/consumer/...`` (HTTP)   First Consumers: ``http_consumer`` + AsgiHandler.encode_response
``/echo/``                 echo ``ws_message`` (connect: the default accept)
``/groups/``               Groups: ``Group("chat")`` add / send "[user] ..." / discard
``/rooms/<room_name>/``    Persisting Data: room from the path, ``?username=`` in the query
``/auth/``                 Authentication: channel_session_user_from_http, group by initial
``/secure/``               Security: ``allowed_hosts_only`` on the auth section's ws_add
``/chat/<room>/``          Routing: ``include(chat_routing, path=r"^/chat")``, room kwarg
``/poll/`` (HTTP POST)     Routing: ``route("http.request", poll_consumer, method=...)``
``/ordering/``             Enforcing Ordering: session counter under ``enforce_ordering``
``/<room>/``               Models: ws_message -> ``chat-messages`` -> msg_consumer saves
                           a ChatMessage and sends to ``Group("chat-<room>")``
=========================  ============================================================

``tests.djangoproject.routing.channel_routing`` is :data:`channel_routing`.
"""
import json
from urllib.parse import parse_qs

from django.http import HttpResponse

from channels import Channel, Group
from channels.auth import channel_session_user, channel_session_user_from_http
from channels.handler import AsgiHandler
from channels.routing import connect_consumer, include, null_consumer, route
from channels.security.websockets import allowed_hosts_only
from channels.sessions import channel_session, enforce_ordering

from .chatapp.models import ChatMessage


# -- First Consumers ----------------------------------------------------------------------

def http_consumer(message):
    # Make standard HTTP response - access ASGI path attribute directly
    response = HttpResponse("Hello world! You asked for %s" % message.content['path'])
    # Encode that response into message format (ASGI)
    for chunk in AsgiHandler.encode_response(response):
        message.reply_channel.send(chunk)


# -- Echo -----------------------------------------------------------------------------------

def echo_ws_message(message):
    # ASGI WebSocket packet-received and send-packet message types
    # both have a "text" key for their textual data.
    message.reply_channel.send({
        "text": message.content['text'],
    })


# -- Groups ---------------------------------------------------------------------------------

# Connected to websocket.connect
def groups_ws_add(message):
    # Accept the connection
    message.reply_channel.send({"accept": True})
    # Add to the chat group
    Group("chat").add(message.reply_channel)


# Connected to websocket.receive
def groups_ws_message(message):
    Group("chat").send({
        "text": "[user] %s" % message.content['text'],
    })


# Connected to websocket.disconnect
def groups_ws_disconnect(message):
    Group("chat").discard(message.reply_channel)


# -- Persisting Data ------------------------------------------------------------------------

# Connected to websocket.connect
@channel_session
def persist_ws_connect(message, room_name):
    # Accept connection
    message.reply_channel.send({"accept": True})
    # Parse the query string
    params = parse_qs(message.content["query_string"])
    if b"username" in params:
        # Set the username in the session
        message.channel_session["username"] = params[b"username"][0].decode("utf8")
        # Add the user to the room_name group
        Group("chat-%s" % room_name).add(message.reply_channel)
    else:
        # Close the connection.
        message.reply_channel.send({"close": True})


# Connected to websocket.receive
@channel_session
def persist_ws_message(message, room_name):
    Group("chat-%s" % room_name).send({
        "text": json.dumps({
            "text": message["text"],
            "username": message.channel_session["username"],
        }),
    })


# Connected to websocket.disconnect
@channel_session
def persist_ws_disconnect(message, room_name):
    Group("chat-%s" % room_name).discard(message.reply_channel)


# -- Authentication -------------------------------------------------------------------------

# Connected to websocket.connect
@channel_session_user_from_http
def auth_ws_add(message):
    # Accept connection
    message.reply_channel.send({"accept": True})
    # Add them to the right group
    Group("chat-%s" % message.user.username[0]).add(message.reply_channel)


# Connected to websocket.receive
@channel_session_user
def auth_ws_message(message):
    Group("chat-%s" % message.user.username[0]).send({
        "text": message['text'],
    })


# Connected to websocket.disconnect
@channel_session_user
def auth_ws_disconnect(message):
    Group("chat-%s" % message.user.username[0]).discard(message.reply_channel)


# -- Security -------------------------------------------------------------------------------

# Connected to websocket.connect
@allowed_hosts_only
@channel_session_user_from_http
def secure_ws_add(message):
    # Accept connection
    message.reply_channel.send({"accept": True})
    # Add them to the right group
    Group("chat-%s" % message.user.username[0]).add(message.reply_channel)


# -- Routing --------------------------------------------------------------------------------

# Connected to websocket.connect
@channel_session_user_from_http
def chat_connect(message, room):
    # Add them to the right group
    Group("chat-%s" % room).add(message.reply_channel)
    # Accept the connection request
    message.reply_channel.send({"accept": True})


def chat_disconnect(message):
    # Not on the page (it only routes it): leave the room named by the connect path.
    room = message.content['path'].strip("/").split("/")[-1]
    Group("chat-%s" % room).discard(message.reply_channel)


def poll_consumer(message):
    # Not on the page either: answer POST /poll/ without the view layer.
    response = HttpResponse("polled %s" % message.content['method'])
    for chunk in AsgiHandler.encode_response(response):
        message.reply_channel.send(chunk)


http_routing = [
    route("http.request", poll_consumer, path=r"^/poll/$", method=r"^POST$"),
]

chat_routing = [
    route("websocket.connect", chat_connect, path=r"^/(?P<room>[a-zA-Z0-9_]+)/$"),
    route("websocket.disconnect", chat_disconnect),
]


# -- Models ---------------------------------------------------------------------------------

# Connected to chat-messages
def msg_consumer(message):
    # Save to model
    room = message.content['room']
    ChatMessage.objects.create(
        room=room,
        message=message.content['message'],
    )
    # Broadcast to listening sockets
    Group("chat-%s" % room).send({
        "text": message.content['message'],
    })


# Connected to websocket.connect
@channel_session
def models_ws_connect(message):
    # Work out room name from path (ignore slashes)
    room = message.content['path'].strip("/")
    # Save room in session and add us to the group
    message.channel_session['room'] = room
    Group("chat-%s" % room).add(message.reply_channel)
    # Accept the connection request
    message.reply_channel.send({"accept": True})


# Connected to websocket.receive
@channel_session
def models_ws_message(message):
    # Stick the message onto the processing queue
    Channel("chat-messages").send({
        "room": message.channel_session['room'],
        "message": message['text'],
    })


# Connected to websocket.disconnect
@channel_session
def models_ws_disconnect(message):
    Group("chat-%s" % message.channel_session['room']).discard(message.reply_channel)


# -- Enforcing Ordering ---------------------------------------------------------------------

# Connected to websocket.connect
@channel_session_user_from_http
def ordering_ws_add(message):
    # This doesn't need a decorator - it always runs separately
    message.channel_session['sent'] = 0
    # Add them to the right group
    Group("chat").add(message.reply_channel)
    # Accept the socket
    message.reply_channel.send({"accept": True})


# Connected to websocket.receive
@enforce_ordering
@channel_session_user
def ordering_ws_message(message):
    # Without enforce_ordering this wouldn't work right
    message.channel_session['sent'] = message.channel_session['sent'] + 1
    Group("chat").send({
        "text": "%s: %s" % (message.channel_session['sent'], message['text']),
    })


# Connected to websocket.disconnect
@channel_session_user
def ordering_ws_disconnect(message):
    Group("chat").discard(message.reply_channel)


# -- The project's routing ------------------------------------------------------------------

def _section(connect, receive, disconnect):
    return [
        route("websocket.connect", connect),
        route("websocket.receive", receive),
        route("websocket.disconnect", disconnect),
    ]


persist_routing = [
    route("websocket.connect", persist_ws_connect, path=r"^/(?P<room_name>[a-zA-Z0-9_]+)/$"),
    route("websocket.receive", persist_ws_message, path=r"^/(?P<room_name>[a-zA-Z0-9_]+)/$"),
    route("websocket.disconnect", persist_ws_disconnect, path=r"^/(?P<room_name>[a-zA-Z0-9_]+)/$"),
]

#: Models section: a one-segment path is the room; listed last so it never shadows the rest.
MODELS_PATH = r"^/[a-zA-Z0-9_]+/$"

channel_routing = [
    route("http.request", http_consumer, path=r"^/consumer/"),
    include(http_routing),
    route("websocket.connect", connect_consumer, path=r"^/echo/$"),  # the default accept
    route("websocket.receive", echo_ws_message, path=r"^/echo/$"),
    # The default no-op, routed here so the Models catch-all below does not take it.
    route("websocket.disconnect", null_consumer, path=r"^/echo/$"),
    include(_section(groups_ws_add, groups_ws_message, groups_ws_disconnect), path=r"^/groups/$"),
    include(persist_routing, path=r"^/rooms"),
    include(_section(auth_ws_add, auth_ws_message, auth_ws_disconnect), path=r"^/auth/$"),
    include(_section(secure_ws_add, auth_ws_message, auth_ws_disconnect), path=r"^/secure/$"),
    include(chat_routing, path=r"^/chat"),
    include(_section(ordering_ws_add, ordering_ws_message, ordering_ws_disconnect), path=r"^/ordering/$"),
    route("chat-messages", msg_consumer),
    route("websocket.connect", models_ws_connect, path=MODELS_PATH),
    route("websocket.receive", models_ws_message, path=MODELS_PATH),
    route("websocket.disconnect", models_ws_disconnect, path=MODELS_PATH),
]
