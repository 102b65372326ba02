"""Webhook signatures, two of them on every signed delivery:

* ``X-Heldar-Signature: sha256=<hex HMAC-SHA256(secret, exact body bytes)>`` (the original form);
* the Standard Webhooks form (https://www.standardwebhooks.com): ``webhook-id`` (the event id, the same on
  every retry), ``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 over
  "<id>.<timestamp>.<body>">``, so a receiver can refuse replays by checking the timestamp's age. The key is
  the secret's bytes, or for a secret in the ``whsec_<base64>`` form the decoded base64 (as Standard
  Webhooks libraries expect).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SIGNATURE_HEADER = "X-Heldar-Signature"
PREFIX = "sha256="
STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"


def sign(secret: str, body: bytes) -> str:
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw bytes it got and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())


def standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign_standard(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(standard_key(secret), signed, hashlib.sha256).digest()).decode()


def verify_standard(
    secret: str, message_id: str, timestamp: str, body: bytes, header: str | None, *, now: int, tolerance_s: int = 300
) -> bool:
    """A receiver's check: a fresh timestamp and one matching ``v1,`` signature (space-separated list)."""
    if header is None or not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign_standard(secret, message_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, part) for part in header.split())
