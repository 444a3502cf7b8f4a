"""The tutorial's "Models" section: rooms and the messages said in them."""
from __future__ import annotations

from django.db import models

#: What a room name may look like; the WebSocket route and the URLs use the same rule.
ROOM_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
ROOM_NAME_MAX_LENGTH = 64
USERNAME_MAX_LENGTH = 32
TEXT_MAX_LENGTH = 2000
#: How many messages a room's page shows when it loads.
HISTORY_SIZE = 50


class Room(models.Model):
    """A chat room; its WebSocket group is ``chat-<name>``."""

    name = models.SlugField(max_length=ROOM_NAME_MAX_LENGTH, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def group_name(self) -> str:
        """Name of the channel-layer group whose members are this room's sockets."""
        return "chat-%s" % self.name

    def last_messages(self, count: int = HISTORY_SIZE) -> list[ChatMessage]:
        """Return the room's newest ``count`` messages, oldest first."""
        newest = list(self.messages.order_by("-created", "-id")[:count])
        newest.reverse()
        return newest


class ChatMessage(models.Model):
    """One line said in a room, saved by ``msg_consumer`` before it is broadcast."""

    room = models.ForeignKey(Room, related_name="messages", on_delete=models.CASCADE)
    username = models.CharField(max_length=USERNAME_MAX_LENGTH)
    text = models.TextField(max_length=TEXT_MAX_LENGTH)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return "[%s] %s: %s" % (self.room.name, self.username, self.text)

    def as_dict(self) -> dict:
        """The JSON-able form sent to browsers (over the socket and by the history view)."""
        return {
            "type": "message",
            "id": self.pk,
            "room": self.room.name,
            "username": self.username,
            "text": self.text,
            "created": self.created.isoformat(),
        }
