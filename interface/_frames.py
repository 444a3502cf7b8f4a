"""RFC 6455 framing for the common case, beside wsproto.

Almost every frame a server sees is a whole, masked, unfragmented text or binary
message of modest size; almost every frame it sends is one unfragmented message.
wsproto handles every frame correctly but spends about 10 µs on each (a generator,
a buffer object, enums and namedtuples per frame). The WebSocket core
(``_ws.WebSocketConnection``) uses the helpers here for exactly those common frames
and hands every other frame (control frames, fragments, anything malformed, anything
while closing) to wsproto, unchanged and from a frame boundary, so wsproto's state
never disagrees with what was seen. Compression goes through the very
permessage-deflate object wsproto negotiated (:class:`Deflate`, wsproto's extension
plus a one-call path for a whole message), so the shared compression context stays
consistent whichever path a frame takes.

Apart from :class:`Deflate`, pure functions on bytes.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

__all__ = ["Deflate", "FAST_MAX", "FrameHead", "encode_frame", "parse_head", "unmask"]

#: Largest payload taken by the fast path; longer frames stream through wsproto.
FAST_MAX = 64 * 1024

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2

_LEN16 = struct.Struct("!H")
_LEN64 = struct.Struct("!Q")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class FrameHead(NamedTuple):
    """The fixed part of one frame, as sent.

    Attributes:
        first: the first byte (FIN, RSV1-3, opcode).
        masked: the MASK bit.
        size: bytes of the header, masking key included.
        length: payload length.
        minimal: whether the length used the shortest encoding (RFC 6455 §5.2).
    """

    first: int
    masked: bool
    size: int
    length: int
    minimal: bool


def parse_head(buf: bytes | bytearray, pos: int) -> FrameHead | None:
    """Read the header of the frame starting at ``buf[pos]``; None if it is not all there."""
    available = len(buf) - pos
    if available < 2:
        return None
    first = buf[pos]
    second = buf[pos + 1]
    masked = bool(second & 0x80)
    length = second & 0x7F
    size = 2
    minimal = True
    if length == 126:
        if available < 4:
            return None
        length = _LEN16.unpack_from(buf, pos + 2)[0]
        size = 4
        minimal = length > 125
    elif length == 127:
        if available < 10:
            return None
        length = _LEN64.unpack_from(buf, pos + 2)[0]
        size = 10
        minimal = 0xFFFF < length < 1 << 63
    if masked:
        size += 4
    return FrameHead(first, masked, size, length, minimal)


def unmask(data: bytes | bytearray | memoryview, key: bytes | bytearray) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 §5.3)."""
    n = len(data)
    if not n:
        return b""
    # One big-integer XOR runs in C; a per-byte loop would cost more than wsproto.
    keys = bytes(key) * ((n + 3) // 4)
    value = int.from_bytes(data, "little") ^ int.from_bytes(keys[:n], "little")
    return value.to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One unmasked (server) frame with FIN set: header plus ``payload``."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n <= 0xFFFF:
        return _HEAD16.pack(first, 126, n) + payload
    return _HEAD64.pack(first, 127, n) + payload


_TAIL = b"\x00\x00\xff\xff"


class Deflate(PerMessageDeflate):
    """wsproto's permessage-deflate (RFC 7692) plus whole-message shortcuts for a server.

    wsproto runs its extension through four hooks per frame; a whole single-frame
    message needs one zlib call each way. These methods do exactly what the hooks do
    for such a message, on the same compressor and decompressor (context takeover
    and the negotiated window sizes included). ``inflate_message`` may only be called
    between messages, which the core guarantees (no fragmented message is open).
    """

    #: Bytes one compressed chunk wsproto hands over (fragments, frames over
    #: ``FAST_MAX``) may inflate to; more closes 1009 (set by the core from the
    #: message limit). None: no bound, as in wsproto.
    inbound_limit: int | None = None

    #: Whether the frame wsproto is reading is a control frame.
    _in_control = False

    def frame_inbound_header(self, proto: Any, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> CloseReason | RsvBits:
        """wsproto's hook, leaving the open message's state alone for a control frame.

        wsproto's own resets its per-message state at every frame's end, control frames
        included, so a ping between two fragments of a compressed message made the rest
        of it "uncompressed" (close 1007); RFC 6455 §5.4 allows control frames there.
        """
        self._in_control = opcode.iscontrol()
        if self._in_control:
            return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else RsvBits(False, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        """wsproto's hook; nothing to do at the end of a control frame; a fresh
        decompressor after a message that ended the client's deflate stream."""
        if self._in_control:
            return None
        result = super().frame_inbound_complete(proto, fin)
        if fin:
            # Only between messages: wsproto makes a decompressor at a message's first
            # frame, so one dropped after a fragment left the next fragment without any.
            self._after_message()
        return result

    def _after_message(self) -> None:
        # A final block (BFINAL=1) ends a deflate stream: the client may flush that way
        # (RFC 7692 §7.2.3.3), and its next message then starts a new stream, which the
        # finished decompressor would turn into nothing at all.
        decompressor = self._decompressor
        if decompressor is not None and decompressor.eof:
            self._decompressor = None

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        """wsproto's hook, inflating at most ``inbound_limit + 1`` bytes (a bomb closes 1009)."""
        if self._in_control:
            return data
        limit = self.inbound_limit
        decompressor = self._decompressor
        if limit is None or decompressor is None or not self._inbound_compressed or not self._inbound_is_compressible:
            return super().frame_inbound_payload_data(proto, data)
        try:
            out = decompressor.decompress(bytes(data), limit + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(out) > limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def inflate_message(self, payload: bytes, limit: int) -> bytes | None:
        """The data of one whole compressed message; None if it does not inflate.

        Args:
            payload: the frame's (unmasked) payload.
            limit: bytes the caller accepts. At most ``limit + 1`` bytes are inflated
                (a 64 KiB frame could inflate to 64 MiB); a longer result means the
                message is over the limit, and the connection must close (1009): the
                shared context is left mid-message.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-int(self.client_max_window_bits))
        try:
            data = decompressor.decompress(payload + _TAIL, limit + 1)
            if len(data) > limit:
                return data
            data += decompressor.flush()
        except zlib.error:
            return None
        if self.client_no_context_takeover:
            self._decompressor = None
        else:
            self._after_message()
        return data

    def deflate_message(self, data: bytes) -> bytes:
        """The payload of one whole compressed message (RSV1 set) carrying ``data``."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                                             -int(self.server_max_window_bits))
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.server_no_context_takeover:
            self._compressor = None
        return out[:-4]


#: What :class:`Deflate` uses of wsproto's PerMessageDeflate beyond its public API.
_WSPROTO_INTERNALS = ("_compressor", "_decompressor", "_inbound_compressed", "_inbound_is_compressible",
                      "client_max_window_bits", "server_max_window_bits", "client_no_context_takeover",
                      "server_no_context_takeover")


def check_wsproto(extension: type = PerMessageDeflate) -> None:
    """Fail at import, with one clear line, if wsproto's permessage-deflate changed shape.

    :class:`Deflate` shares wsproto's private compressor and decompressor; were they
    renamed, the fast path would keep its own context beside wsproto's and a
    fragmented message would inflate garbage (close 1007) only with compression and
    context takeover on: a failure far from its cause.

    Raises:
        ImportError: an attribute :class:`Deflate` relies on is missing.
    """
    probe = extension()
    missing = [name for name in _WSPROTO_INTERNALS if not hasattr(probe, name)]
    if missing:
        import wsproto

        raise ImportError(f"wsproto {getattr(wsproto, '__version__', '?')}: PerMessageDeflate has no "
                          f"{', '.join(missing)}; interface._frames.Deflate was written against wsproto 1.2-1.3")


check_wsproto()
