"""Sealing of secrets stored in the database (security F7/F21): AES-256-GCM under ``HELDAR_SECRET_KEY``.

A sealed value is ``enc:v1:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>``: ``kid`` names the key that sealed
it (8 hex digits of a hash of the key), so a value sealed under ``HELDAR_SECRET_KEY_PREVIOUS`` is still
opened during a rotation and re-sealed under the new key on start. Each value is bound to its purpose
(associated data such as ``camera-password``), so a sealed webhook secret cannot be pasted in as a camera
password. A value without the prefix is a clear value from before sealing was turned on: it is returned as
is and sealed on the next start that has a key.

The key is process-wide: ``configure()`` at start (the API does), or read lazily from the environment
(``HELDAR_SECRET_KEY``, ``HELDAR_SECRET_KEY_PREVIOUS``) in processes that never configured one, such as the
Ray workers that start ffmpeg; on a multi-node cluster every node needs the variable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
_BYTES_PREFIX = PREFIX.encode()
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NONCE = 12


class SecretError(RuntimeError):
    """A sealed value cannot be opened (no key, wrong key, tampered). Never carries the value."""


def derive_key(material: str) -> bytes:
    """64 hex digits are the key itself; any other string (32+ characters) is hashed to 32 bytes."""
    material = material.strip()
    if _HEX64.match(material):
        return bytes.fromhex(material)
    return hashlib.sha256(b"heldar-secret-key-v1:" + material.encode()).digest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"heldar-kid:" + key).hexdigest()[:8]


@dataclass(frozen=True)
class Sealer:
    """Seals under ``key`` and opens under ``key`` or ``previous``. ``key`` None: sealing is off."""

    key: bytes | None = None
    previous: bytes | None = None

    @classmethod
    def from_strings(cls, key: str | None, previous: str | None = None) -> Sealer:
        return cls(derive_key(key) if key else None, derive_key(previous) if previous else None)

    @property
    def enabled(self) -> bool:
        return self.key is not None

    @property
    def kid(self) -> str | None:
        return key_id(self.key) if self.key is not None else None

    def _keys(self) -> dict[str, bytes]:
        out = {}
        for k in (self.previous, self.key):
            if k is not None:
                out[key_id(k)] = k
        return out

    def seal(self, plain: bytes, purpose: str) -> str:
        if self.key is None:
            raise SecretError("no HELDAR_SECRET_KEY configured")
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(self.key).encrypt(nonce, plain, purpose.encode())
        return f"{PREFIX}{self.kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, value: str, purpose: str) -> bytes:
        try:
            kid, _, body = value[len(PREFIX) :].partition(":")
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            raise SecretError(f"malformed sealed {purpose}") from None
        key = self._keys().get(kid)
        if key is None:
            raise SecretError(f"sealed {purpose} needs a key this process does not have (HELDAR_SECRET_KEY)")
        try:
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode())
        except (InvalidTag, ValueError):
            raise SecretError(f"sealed {purpose} does not open (wrong key or tampered)") from None

    def needs_reseal(self, value: str | bytes | None) -> bool:
        """True when ``value`` should be (re-)sealed now: clear text, or sealed under another key."""
        if value is None or self.key is None:
            return False
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not text.startswith(PREFIX):
            return True
        return text[len(PREFIX) :].partition(":")[0] != self.kid


_lock = threading.Lock()
_current: Sealer | None = None


def configure(key: str | None, previous: str | None = None) -> Sealer:
    """Set this process's sealer (the API does at start from its settings)."""
    global _current
    with _lock:
        _current = Sealer.from_strings(key, previous)
        return _current


def current() -> Sealer:
    """This process's sealer; from ``HELDAR_SECRET_KEY``/``_PREVIOUS`` when never configured."""
    global _current
    with _lock:
        if _current is None:
            _current = Sealer.from_strings(
                os.environ.get("HELDAR_SECRET_KEY") or None, os.environ.get("HELDAR_SECRET_KEY_PREVIOUS") or None
            )
        return _current


def is_sealed(value: str | bytes | None) -> bool:
    if value is None:
        return False
    return value.startswith(_BYTES_PREFIX) if isinstance(value, bytes) else value.startswith(PREFIX)


def seal_text(value: str | None, purpose: str, sealer: Sealer | None = None) -> str | None:
    """``value`` sealed under the current key; unchanged when None, sealing is off, or already sealed under
    the current key (so a model read from the store and written back is not sealed twice)."""
    s = sealer or current()
    if value is None or not s.enabled:
        return value
    if is_sealed(value):
        if not s.needs_reseal(value):
            return value
        value = s.open(value, purpose).decode()
    return s.seal(value.encode(), purpose)


def open_text(value: str | None, purpose: str, sealer: Sealer | None = None) -> str | None:
    """The clear value of a (possibly) sealed text; a clear value is returned as is."""
    if value is None or not is_sealed(value):
        return value
    return (sealer or current()).open(value, purpose).decode()


def seal_bytes(value: bytes, purpose: str, sealer: Sealer | None = None) -> bytes:
    s = sealer or current()
    if not s.enabled:
        return value
    if is_sealed(value):
        if not s.needs_reseal(value):
            return value
        value = s.open(value.decode(), purpose)
    return s.seal(value, purpose).encode()


def open_bytes(value: bytes, purpose: str, sealer: Sealer | None = None) -> bytes:
    if not is_sealed(value):
        return value
    return (sealer or current()).open(value.decode(), purpose)


def reset() -> None:
    """Forget the configured sealer (the next ``current()`` reads the environment again)."""
    global _current
    with _lock:
        _current = None
