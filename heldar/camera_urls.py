"""Camera stream URLs: vendor templates, credential injection, scheme allow-lists and masking.

Credentials never leave this module in clear except inside the URL handed to ffmpeg.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import quote, unquote, urlsplit, urlunsplit

STREAM_SCHEMES = ("rtsp", "rtsps")
REPLAY_SCHEMES = ("rtsp", "rtsps", "http", "https")
MASK = "***"

_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^/\s]*)@")
# In free text: scheme://user:password@ → scheme://user:***@. The password runs to the last '@' of the
# whitespace-delimited token, whatever it contains (quotes, brackets, '@'): over-masking beats a leak.
_TEXT_URL_CREDS_RE = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>\S*)@(?=[^\s@]*(?:\s|$))")
# Query keys whose values are credentials (password=, pwd=, auth=, token=, api_key=, signature=, …).
SECRET_QUERY_KEY = r"[A-Za-z0-9_.\-]*?(?:password|passwd|pwd|pass|auth|token|key|secret|signature|sig)"
_QUERY_SECRET_RE = re.compile(rf"(?i)(?P<key>[?&;]{SECRET_QUERY_KEY}=)[^&#\s]*")
_SECRET_QUERY_KEY_RE = re.compile(rf"(?i)^{SECRET_QUERY_KEY}$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6_RE = re.compile(r"^\[?[0-9A-Fa-f:.]+\]?$")

VENDOR_PATHS: dict[str, dict[str, str]] = {
    "hikvision": {"main": "/Streaming/Channels/101", "sub": "/Streaming/Channels/102"},
    "dahua": {"main": "/cam/realmonitor?channel=1&subtype=0", "sub": "/cam/realmonitor?channel=1&subtype=1"},
}
HIKVISION_REPLAY_TRACKS = {"main": "101", "sub": "102"}


# Cloud metadata endpoints: never a camera (the same list as the webhook guard).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)


def host_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a host string denotes without DNS, including the legacy IPv4 spellings ffmpeg and libc
    accept (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``); None for a name."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if not text or not all(c in "0123456789abcdefABCDEFxX." for c in text):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_cidrs(text: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``HELDAR_CAMERA_ALLOWED_CIDRS``: comma-separated networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in (text or "").split(",") if part.strip())


def address_refusal(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
) -> str | None:
    """Why a camera may not be reached at ``ip``, or None. Metadata, unspecified and multicast addresses are
    always refused; LAN, loopback and link-local are allowed (cameras and local relays live there) unless an
    allow-list is given, which then must contain the address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a unicast address"
    if allowed and not any(ip.version == net.version and ip in net for net in allowed):
        return "outside HELDAR_CAMERA_ALLOWED_CIDRS"
    return None


def literal_refusal(url: str, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> str | None:
    """``address_refusal`` for a URL whose host is an IP literal (no DNS); None for names."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    ip = host_literal(host) if host else None
    return address_refusal(ip, allowed) if ip is not None else None


async def vet_camera_url(url: str, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> None:
    """Refuse (``ValueError``) a camera stream or replay URL whose host is, or resolves to, a refused address.
    A name that does not resolve here passes when there is no allow-list (the recorder node may resolve
    it); with an allow-list it is refused, since it cannot be checked."""
    probe = url.replace("{start}", "20000101T000000Z").replace("{end}", "20000101T000000Z")
    host = urlsplit(probe).hostname
    if not host:
        raise ValueError("URL has no host")
    ip = host_literal(host)
    if ip is not None:
        why = address_refusal(ip, allowed)
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            infos = []
        if not infos:
            why = "a host that does not resolve" if allowed else None
        else:
            why = next(
                (w for w in (address_refusal(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]), allowed)
                             for i in infos) if w), None,
            )  # fmt: skip
    if why is not None:
        raise ValueError(f"camera host {host[:64]!r} is {why}")


def is_valid_host(address: str) -> bool:
    return bool(_HOST_RE.match(address) or (":" in address and _IPV6_RE.match(address)))


def check_url(url: str, schemes: tuple[str, ...]) -> str | None:
    """None when ``url`` is acceptable, else a reason (scheme allow-list, host, no whitespace)."""
    if len(url) > 2048:
        return "URL longer than 2048 characters"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"URL is malformed ({exc})"
    if parts.scheme.lower() not in schemes:
        return f"URL scheme must be one of {', '.join(schemes)}"
    if not parts.hostname:
        return "URL has no host"
    if port == 0:
        return "URL port must be 1-65535"
    metadata = literal_refusal(url)
    if metadata is not None:
        return f"URL host is {metadata}"
    return None


def mask_url(url: str | None) -> str | None:
    """``rtsp://admin:secret@cam/x?password=y`` → ``rtsp://admin:***@cam/x?password=***``: the userinfo
    password and every credential-looking query value are masked; other URLs are unchanged."""
    if url is None:
        return None
    masked = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    return _QUERY_SECRET_RE.sub(lambda m: f"{m.group('key')}{MASK}", masked)


def url_passwords(*urls: str | None) -> tuple[str, ...]:
    """Credentials inside ``urls`` (userinfo passwords, credential query values), raw and decoded: what a
    text that may quote one of these URLs must hide."""
    found: list[str] = []
    for url in urls:
        if not url:
            continue
        m = _USERINFO_RE.search(url)
        if m and m["pw"]:
            found += [m["pw"], unquote(m["pw"])]
        query = url.partition("?")[2].partition("#")[0]
        for part in re.split(r"[&;]", query):
            key, sep, value = part.partition("=")
            if sep and value and _SECRET_QUERY_KEY_RE.match(key):
                found += [value, unquote(value)]
    return tuple(dict.fromkeys(v for v in found if len(v) >= 3))


def mask_text(text: str, secrets_to_hide: tuple[str | None, ...] = ()) -> str:
    """Mask credentials anywhere in free text (ffmpeg output, error messages).

    Every ``scheme://user:pass@`` URL keeps its user but loses its password (which runs to the last
    ``@`` of the token, so an unencoded ``p@ss`` is hidden too); ``password=``-style query values are
    masked; and any literal secret given (e.g. a camera's password), raw or percent-encoded, is replaced.
    """
    masked = _TEXT_URL_CREDS_RE.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    masked = _QUERY_SECRET_RE.sub(lambda m: f"{m.group('key')}{MASK}", masked)
    for secret in secrets_to_hide:
        if secret and len(secret) >= 3:
            masked = masked.replace(secret, MASK)
            masked = masked.replace(quote(secret, safe=""), MASK)
    return masked


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """Insert percent-encoded credentials into ``url`` unless it already carries userinfo."""
    if not username:
        return url
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    userinfo = quote(username, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def _host_port(address: str, port: int) -> str:
    host = f"[{address.strip('[]')}]" if ":" in address.strip("[]") else address
    return f"{host}:{port}"


def vendor_stream_url(vendor: str, address: str | None, rtsp_port: int, profile: str) -> str | None:
    """The vendor's default RTSP URL for ``profile`` (main|sub), or None when there is no template."""
    paths = VENDOR_PATHS.get(vendor)
    if not paths or not address:
        return None
    return f"rtsp://{_host_port(address, rtsp_port)}{paths[profile]}"


def hikvision_replay_template(address: str, rtsp_port: int, profile: str) -> str:
    track = HIKVISION_REPLAY_TRACKS[profile]
    base = f"rtsp://{_host_port(address, rtsp_port)}/Streaming/tracks/{track}"
    return base + "?starttime={start}&endtime={end}"
