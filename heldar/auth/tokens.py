"""Credential tokens: ``vos_`` session tokens and ``vok_`` API keys, their SHA-256 and masking."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SESSION_PREFIX = "vos_"
API_KEY_PREFIX = "vok_"
KEY_PREFIX_LENGTH = 12  # characters of an API key kept in clear for display ("vok_" + 8 hex)
MAX_TOKEN_LENGTH = 256  # anything longer is not one of ours; refuse it before hashing

_TOKEN_RE = re.compile(r"^vo[sk]_[0-9a-f]{64}$")


def mint_session_token() -> str:
    """``vos_`` + 64 hex (32 random bytes)."""
    return SESSION_PREFIX + secrets.token_hex(32)


def mint_api_key() -> str:
    """``vok_`` + 64 hex (32 random bytes)."""
    return API_KEY_PREFIX + secrets.token_hex(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: the only form in which a credential is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(api_key: str) -> str:
    return api_key[:KEY_PREFIX_LENGTH]


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def is_well_formed(token: str) -> bool:
    """True for a token of the shape we mint (``vos_``/``vok_`` + 64 lowercase hex)."""
    return bool(_TOKEN_RE.match(token))


def mask_token(token: str | None) -> str:
    """A token safe to log: its first 8 characters and an ellipsis."""
    if not token:
        return "-"
    return token[:8] + "…"


def csrf_token_for(session_token: str) -> str:
    """The CSRF token of a session (double-submit, bound to the session): whoever can read it was handed it
    by the login or reads the ``heldar_csrf`` cookie of the site itself; a cross-site page can do neither."""
    digest = hmac.new(session_token.encode("utf-8", "surrogatepass"), b"heldar-csrf-v1", hashlib.sha256)
    return digest.hexdigest()[:43]
