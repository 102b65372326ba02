"""Camera stream URLs: vendor templates, credential injection, scheme allow-lists and masking.

Credentials never leave this module in clear except inside the URL handed to ffmpeg.
"""

from __future__ import annotations

import re
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
