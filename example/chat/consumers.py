"""The chat's consumers, written the way the Channels 1.x tutorial writes them.

A browser opens ``ws://host/chat/<room>/?username=<name>``:

* ``ws_connect`` (``websocket.connect``) checks the Origin against ALLOWED_HOSTS, keeps
  the room and the username in the channel session and adds the socket to the room's
  group ``chat-<room>``.
* ``ws_message`` (``websocket.receive``) does no database work itself: it puts the text on
  the ``chat-messages`` channel (the tutorial's "Models" section).
* ``msg_consumer`` (``chat-messages``) saves a ``ChatMessage`` and sends it, as JSON, to the
  room's group.
* ``ws_disconnect`` (``websocket.disconnect``) takes the socket out of the group.

``enforce_ordering`` makes the connect and every receive of one socket run in order
even with several workers, as the tutorial's "Enforcing Ordering" section shows; it
keeps its bookkeeping in the channel session, so it is used on connect too. The
ordering ends at the ``chat-messages`` queue: two workers may take two consecutive lines
from it and save them in either order (the tutorial's design accepts that; the page
shows lines in the order they were saved).
"""
from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from channels import Channel, Group
from channels.exceptions import DenyConnection
from channels.security.websockets import allowed_hosts_only
from channels.sessions import channel_session, enforce_ordering

from chat.models import ROOM_NAME_MAX_LENGTH, TEXT_MAX_LENGTH, USERNAME_MAX_LENGTH, ChatMessage, Room

logger = logging.getLogger(__name__)

#: The worker-side queue between receiving a line and saving + broadcasting it.
MESSAGES_CHANNEL = "chat-messages"
ANONYMOUS = "anonymous"


def room_group(room_name: str) -> Group:
    """Return the group of every socket open on room ``room_name``."""
    return Group("chat-%s" % room_name)


def username_from_query(query_string: bytes | str | None) -> str:
    """Pick the username out of a connect message's raw query string.

    Args:
        query_string: the ``query_string`` of a ``websocket.connect`` message (bytes per
            ASGI 1; str tolerated).

    Returns:
        The stripped ``username`` parameter cut to the model's limit, or ``"anonymous"``.
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("utf-8", "replace")
    values = parse_qs(query_string or "").get("username", [])
    name = " ".join(values[0].split()) if values else ""
    return name[:USERNAME_MAX_LENGTH] or ANONYMOUS


@allowed_hosts_only
@enforce_ordering
def ws_connect(message, room_name):
    """Accept a socket on a room: remember who and where, join the room's group."""
    if len(room_name) > ROOM_NAME_MAX_LENGTH:
        raise DenyConnection
    Room.objects.get_or_create(name=room_name)
    message.channel_session["room"] = room_name
    message.channel_session["username"] = username_from_query(message.content.get("query_string"))
    room_group(room_name).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@enforce_ordering
def ws_message(message, room_name):
    """Queue one line typed in a room for ``msg_consumer``; ignore empty/binary frames."""
    text = message.content.get("text")
    if not isinstance(text, str) or not text.strip():
        return
    Channel(MESSAGES_CHANNEL).send({
        "room": message.channel_session.get("room", room_name),
        "username": message.channel_session.get("username", ANONYMOUS),
        "text": text.strip()[:TEXT_MAX_LENGTH],
    })


@channel_session
def ws_disconnect(message, room_name):
    """Leave the room's group (channel_session cleans up the session of a closed socket)."""
    room_group(message.channel_session.get("room", room_name)).discard(message.reply_channel)


def msg_consumer(message):
    """Save a chat line, then send it to everyone in its room (the tutorial's Models part)."""
    room, _ = Room.objects.get_or_create(name=message.content["room"])
    chat_message = ChatMessage.objects.create(
        room=room,
        username=message.content["username"],
        text=message.content["text"],
    )
    room_group(room.name).send({"text": json.dumps(chat_message.as_dict())})


def ws_reject(message):
    """Refuse a socket opened on any path the chat does not serve."""
    logger.info("refusing a WebSocket on unknown path %r", message.content.get("path"))
    message.reply_channel.send({"accept": False})


def ws_disconnect_unrouted(message):
    """Consume the disconnect of a socket ``ws_reject`` refused: nothing to clean up."""
