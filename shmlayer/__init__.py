"""shmlayer: an ASGI 1 channel layer in one POSIX shared-memory segment (no broker)."""

from .contract import BaseChannelLayer, ChannelFull, MessageTooLarge

__all__ = ["BaseChannelLayer", "ChannelFull", "MessageTooLarge"]
