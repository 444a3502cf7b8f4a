"""App config of the example chat app."""
from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The tutorial's chat: rooms, messages and their consumers."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
