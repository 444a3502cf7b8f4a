"""shmlayer: an ASGI 1 channel layer in one POSIX shared-memory segment (no broker).

``ShmChannelLayer`` is the layer; ``python -m shmlayer stats|flush|unlink NAME`` inspects
and manages a segment. The byte layout and the theory of operation are in ``_layout.py``.
"""

from .contract import BaseChannelLayer, ChannelFull, MessageTooLarge
from ._segment import LayoutVersionMismatch, SegmentError, default_segment_name
from .layer import SegmentFull, ShmChannelLayer

__all__ = [
    "BaseChannelLayer",
    "ChannelFull",
    "LayoutVersionMismatch",
    "MessageTooLarge",
    "SegmentError",
    "SegmentFull",
    "ShmChannelLayer",
    "default_segment_name",
]
