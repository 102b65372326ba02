"""Secrets at rest: AES-GCM sealing of camera passwords, webhook secrets and the frame-ticket key."""

from heldar.secrets.sealing import (
    PREFIX,
    Sealer,
    SecretError,
    configure,
    current,
    is_sealed,
    open_bytes,
    open_text,
    seal_bytes,
    seal_text,
)

__all__ = [
    "PREFIX",
    "Sealer",
    "SecretError",
    "configure",
    "current",
    "is_sealed",
    "open_bytes",
    "open_text",
    "seal_bytes",
    "seal_text",
]
