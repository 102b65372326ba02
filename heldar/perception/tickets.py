"""Frame tickets: proof that a detection batch came from a frame the caller pulled under a live lease.

``f1.<task>.<captured_ms>.<exp>.<mac>`` where ``mac`` is base64url(HMAC-SHA256(secret,
"f1\\n{key_id}\\n{camera}\\n{task}\\n{captured_ms}\\n{exp}")). The key id (the credential's principal id)
and the camera are *not* in the ticket: the verifier recomputes the MAC with the **caller's** id and the
**lease's** camera, so a ticket minted for one credential is useless to any other. The secret is shared
by every API process (``HELDAR_FRAME_TICKET_SECRET`` or a random one stored once in the database).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "f1"
_TICKET_RE = re.compile(r"^f1\.([A-Za-z0-9_-]{1,80})\.(\d{1,15})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")


class TicketError(ValueError):
    """The ticket is malformed, forged, bound to another credential or camera, or expired."""


@dataclass(frozen=True)
class TicketClaims:
    task_id: str
    captured_ms: int
    expires_at: int  # unix seconds

    @property
    def frame_id(self) -> str:
        return f"{self.task_id}:{self.captured_ms}"


def _mac(secret: bytes, key_id: str, camera_id: str, task_id: str, captured_ms: int, exp: int) -> str:
    message = f"{PREFIX}\n{key_id}\n{camera_id}\n{task_id}\n{captured_ms}\n{exp}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_ticket(
    secret: bytes, *, key_id: str, camera_id: str, task_id: str, captured_ms: int, now: float, ttl_s: float
) -> str:
    exp = int(now + ttl_s)
    return f"{PREFIX}.{task_id}.{captured_ms}.{exp}.{_mac(secret, key_id, camera_id, task_id, captured_ms, exp)}"


def parse_ticket(ticket: str) -> TicketClaims:
    """The claims of a well-formed ticket, unverified (to find the lease it names)."""
    match = _TICKET_RE.match(ticket or "")
    if match is None:
        raise TicketError("malformed frame ticket")
    return TicketClaims(match[1], int(match[2]), int(match[3]))


def verify_ticket(secret: bytes, ticket: str, *, key_id: str, camera_id: str, now: float) -> TicketClaims:
    """The claims when the MAC matches (key id, camera) and the ticket has not expired."""
    claims = parse_ticket(ticket)
    expected = _mac(secret, key_id, camera_id, claims.task_id, claims.captured_ms, claims.expires_at)
    if not hmac.compare_digest(expected, ticket.rsplit(".", 1)[1]):
        raise TicketError("frame ticket signature does not match this credential")
    if claims.expires_at < now:
        raise TicketError("frame ticket expired")
    return claims
