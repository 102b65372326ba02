"""Prefixed identifiers (``seg_…``, ``gap_…``, …) and camera-id slugs."""

from __future__ import annotations

import re
import secrets
import unicodedata

CAMERA_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def new_id(prefix: str) -> str:
    """A new random id such as ``seg_3f9c…`` (128 bits of randomness)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def slugify(text: str, max_len: int = 63) -> str:
    """``"Front Door #2"`` → ``"front-door-2"``; empty when nothing usable remains."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:max_len].rstrip("-")


def is_camera_id(value: str) -> bool:
    return bool(CAMERA_ID_RE.match(value))
