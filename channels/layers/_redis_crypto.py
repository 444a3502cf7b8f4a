"""Optional encryption at rest of message bodies (``symmetric_encryption_keys``).

Uses the ``cryptography`` package's Fernet (AES-128-CBC + HMAC-SHA256) through
MultiFernet: the first key encrypts, every key decrypts, so keys can be rotated by
putting the new key first and dropping the old one once its messages have expired.
Keys are any strings; each is stretched to a Fernet key with SHA-256, as asgi_redis did.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Sequence

__all__ = ["Crypter", "make_crypter"]


class Crypter:
    """Encrypts and decrypts message bodies with a MultiFernet."""

    def __init__(self, fernet: Any, invalid_token: type[Exception]) -> None:
        self._fernet = fernet
        self._invalid_token = invalid_token

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt one serialised message."""
        return self._fernet.encrypt(data)  # type: ignore[no-any-return]

    def decrypt(self, data: bytes, channel: str) -> bytes:
        """Decrypt one stored body.

        Raises:
            ValueError: no key decrypts it (the sender used a key this process lacks).
        """
        try:
            return self._fernet.decrypt(data)  # type: ignore[no-any-return]
        except self._invalid_token:
            raise ValueError(
                f"A message on {channel!r} could not be decrypted with any of symmetric_encryption_keys: "
                "every process must share the sender's key"
            ) from None


def make_crypter(keys: Sequence[str | bytes] | None) -> Crypter | None:
    """A :class:`Crypter` for ``keys``, or None when no keys are given.

    Raises:
        TypeError: ``keys`` is not a list of non-empty str/bytes.
        ImportError: keys are given but the ``cryptography`` package is not installed.
    """
    if keys is None:
        return None
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)) or not keys:
        raise TypeError("symmetric_encryption_keys must be a non-empty list of str or bytes keys")
    for key in keys:
        if not isinstance(key, (str, bytes)) or not key:
            raise TypeError(f"symmetric_encryption_keys entries must be non-empty str or bytes, not {key!r}")
    try:
        from cryptography.fernet import Fernet, InvalidToken, MultiFernet
    except ImportError as exc:
        raise ImportError(
            "symmetric_encryption_keys needs the 'cryptography' package: pip install cryptography"
        ) from exc
    fernets = []
    for key in keys:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest())))
    return Crypter(MultiFernet(fernets), InvalidToken)
