"""Class-based consumers (Channels 1.x ``channels.generic``)."""

from .base import BaseConsumer

__all__ = ["BaseConsumer"]
