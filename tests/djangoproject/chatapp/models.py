from django.db import models


class ChatMessage(models.Model):
    """A chat line: what the tutorial's msg_consumer saves from the chat-messages channel."""

    room = models.CharField(max_length=100)
    message = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
