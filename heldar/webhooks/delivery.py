"""One webhook POST: the body, the headers, the request pinned to the vetted address, and the retry delay.

The body is ``{id, camera_id, event_type, severity, timestamp, payload}`` serialised once; the signature
covers exactly those bytes and exactly those bytes are sent. Redirects are never followed (a 3xx is a
failure), proxies from the environment are ignored, and the response body is not read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from heldar.camera_urls import mask_text
from heldar.ids import new_id
from heldar.webhooks.signing import (
    SIGNATURE_HEADER,
    STANDARD_ID,
    STANDARD_SIGNATURE,
    STANDARD_TIMESTAMP,
    sign,
    sign_standard,
)
from heldar.webhooks.ssrf import Target, UnsafeTarget, resolve_target

logger = logging.getLogger(__name__)

USER_AGENT = "heldar-webhooks/1"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status: int | None
    error: str | None
    duration_ms: int
    delivery_id: str


def event_body(event: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed for one event row (``id`` is the event's id, ``seq`` its cursor)."""
    timestamp = event["timestamp"]
    doc = {
        "id": str(event["id"]),
        "seq": event.get("seq"),
        "camera_id": event.get("camera_id"),
        "event_type": event["event_type"],
        "severity": event["severity"],
        "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp,
        "payload": event.get("payload") or {},
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode()


def request_headers(
    event_type: str, delivery_id: str, body: bytes, secret: str | None, message_id: str | None = None
) -> dict[str, str]:
    now = int(time.time())
    message_id = message_id or delivery_id
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Heldar-Event": event_type,
        "X-Heldar-Delivery": delivery_id,
        "X-Heldar-Timestamp": str(now),
        STANDARD_ID: message_id,
        STANDARD_TIMESTAMP: str(now),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
        headers[STANDARD_SIGNATURE] = sign_standard(secret, message_id, now, body)
    return headers


def pinned_url(target: Target) -> str:
    """The URL with its host replaced by the vetted address (the Host header and SNI keep the name)."""
    parts = urlsplit(target.url)
    host = f"[{target.address}]" if ":" in target.address else target.address
    return urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Capped exponential backoff after the ``attempt``-th failure (1-based): base, 2·base, 4·base, …"""
    return float(min(max_s, base_s * (2 ** max(0, attempt - 1))))


def new_client(timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s))


async def post_event(
    client: httpx.AsyncClient,
    url: str,
    event_type: str,
    body: bytes,
    secret: str | None,
    *,
    allow_private: bool,
    message_id: str | None = None,
) -> DeliveryResult:
    """Vet the URL (resolving it now), POST ``body`` to the vetted address, and say how it went."""
    delivery_id = new_id("whd")
    started = time.monotonic()

    def done(ok: bool, status: int | None, error: str | None) -> DeliveryResult:
        return DeliveryResult(ok, status, error, int((time.monotonic() - started) * 1000), delivery_id)

    try:
        target = await resolve_target(url, allow_private=allow_private)
    except UnsafeTarget as exc:
        return done(False, None, f"refused: {exc}")
    headers = request_headers(event_type, delivery_id, body, secret, message_id)
    parts = urlsplit(url)
    headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with client.stream("POST", pinned_url(target), content=body, headers=headers,
                                 extensions=extensions) as response:  # fmt: skip
            status = response.status_code
    except httpx.TimeoutException:
        return done(False, None, "timeout")
    except httpx.HTTPError as exc:
        return done(False, None, mask_text(f"{exc.__class__.__name__}: {exc}")[:300])
    if 200 <= status < 300:
        return done(True, status, None)
    if 300 <= status < 400:
        return done(False, status, f"HTTP {status} (redirects are not followed)")
    return done(False, status, f"HTTP {status}")
