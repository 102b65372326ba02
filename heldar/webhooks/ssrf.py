"""The SSRF guard for webhook targets: scheme, host, and every address the host resolves to.

Refused always: cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200), unspecified,
multicast and reserved addresses. Refused unless ``allow_private``: loopback and link-local. Private LAN
ranges (RFC 1918, ULA) are allowed: an NVR's receivers usually live on its LAN. The caller connects to the
address checked here (``Target.address``), never re-resolving, so DNS rebinding cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
MAX_URL_LENGTH = 2048


class UnsafeTarget(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: str  # the vetted IP the request will connect to


def parse_url(url: str) -> tuple[str, str, int]:
    """Syntax only: ``(scheme, host, port)`` of an http(s) URL without credentials."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"url must be 1-{MAX_URL_LENGTH} characters")
    if any(c.isspace() for c in url):
        raise UnsafeTarget("url must not contain whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("url is malformed") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("url must be http:// or https://")
    if not parts.hostname:
        raise UnsafeTarget("url has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("url must not carry credentials (use the webhook secret)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def address_refusal(address: str, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast or (ip.is_reserved and not ip.is_loopback):
        return "not a unicast address"
    if not allow_private and ip.is_loopback:
        return "a loopback address"
    if not allow_private and ip.is_link_local:
        return "a link-local address"
    return None


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Resolve the host and vet every address it has; the first one is the one to connect to."""
    scheme, host, port = parse_url(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"host {host!r} does not resolve ({exc.__class__.__name__})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeTarget(f"host {host!r} does not resolve")
    for address in addresses:
        why = address_refusal(address, allow_private=allow_private)
        if why is not None:
            raise UnsafeTarget(f"host {host!r} resolves to {why}")
    return Target(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def mask_target(url: str) -> str:
    """What a principal who may not manage webhooks sees of a target (security F14): scheme, host and port;
    the path and query (for Slack/Teams/Zapier-style URLs, the credential) become ``/…``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}/…"
