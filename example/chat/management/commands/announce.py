"""``manage.py announce ROOM TEXT``: say something in a room from outside any consumer.

Outside a consumer ``Group.send`` goes to the layer at once (inside one, Channels 1.x
holds sends until the consumer returns). The command attaches to the same channel
layer the running site uses, so it must run with the same settings (and, for the
shared-memory layer, on the same host).
"""
from __future__ import annotations

import json
import re

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from channels import Group
from channels.asgi import get_channel_layer

from chat.consumers import room_group
from chat.models import ROOM_NAME_MAX_LENGTH, ROOM_NAME_PATTERN, TEXT_MAX_LENGTH


class Command(BaseCommand):
    help = "Send an announcement to everyone connected to a chat room."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="room name (letters, digits, '-' and '_')")
        parser.add_argument("text", help="the announcement")

    def handle(self, *args, **options) -> None:
        room = options["room"]
        text = options["text"].strip()
        if len(room) > ROOM_NAME_MAX_LENGTH or not re.match(ROOM_NAME_PATTERN, room):
            raise CommandError("invalid room name %r: use letters, digits, '-' and '_'" % room)
        if not text:
            raise CommandError("the announcement text is empty")
        if len(text) > TEXT_MAX_LENGTH:
            raise CommandError("the announcement is longer than %d characters" % TEXT_MAX_LENGTH)
        group = room_group(room)
        payload = {"type": "announce", "room": room, "text": text, "created": timezone.now().isoformat()}
        group.send({"text": json.dumps(payload)})
        members = self._count_members(group)
        where = "room %s" % room if members is None else "room %s (%d open socket%s)" % (
            room, members, "" if members == 1 else "s")
        self.stdout.write("Announced to %s." % where)

    @staticmethod
    def _count_members(group: Group) -> int | None:
        """Members of the group right now, if the layer can tell (the "groups" extension)."""
        layer = get_channel_layer()
        if "groups" not in getattr(layer, "extensions", ()):
            return None
        return len(list(layer.group_channels(group.name)))
