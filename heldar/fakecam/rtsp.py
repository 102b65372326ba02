"""RTSP 1.0 (RFC 2326) message parsing and formatting, plus the URL forms the simulator serves."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024
SERVER_NAME = "heldar-fakecam/1.0"

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    457: "Invalid Range",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}

PUBLIC_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"


class RtspProtocolError(Exception):
    """The peer sent something that is not RTSP; the connection is closed."""


@dataclass
class RtspRequest:
    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def cseq(self) -> str | None:
        return self.header("cseq")

    @property
    def session_id(self) -> str | None:
        value = self.header("session")
        if value is None:
            return None
        return value.split(";", 1)[0].strip()


def parse_request_head(head: bytes) -> RtspRequest:
    """Parse the request line and headers (``head`` ends with the blank line)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RtspProtocolError("request head is not UTF-8") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise RtspProtocolError(f"bad request line {lines[0][:100]!r}")
    method, url, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise RtspProtocolError(f"bad header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return RtspRequest(method=method.upper(), url=url, version=version, headers=headers)


async def read_message(reader: asyncio.StreamReader) -> RtspRequest | tuple[int, bytes] | None:
    """Read one RTSP request or one interleaved binary frame ``(channel, payload)``; None at EOF."""
    try:
        first = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        return None
    if first == b"$":
        try:
            hdr = await reader.readexactly(3)
            size = int.from_bytes(hdr[1:3], "big")
            payload = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return None
        return hdr[0], payload
    try:
        rest = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise RtspProtocolError("request head too large") from exc
    head = first + rest
    if len(head) > MAX_HEADER_BYTES:
        raise RtspProtocolError("request head too large")
    request = parse_request_head(head[:-4])
    length = int(request.header("content-length", "0") or "0")
    if length < 0 or length > MAX_BODY_BYTES:
        raise RtspProtocolError("bad Content-Length")
    if length:
        try:
            request.body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
    return request


def format_response(
    status: int, cseq: str | None, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"RTSP/1.0 {status} {REASONS.get(status, 'Unknown')}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    lines.append(f"Server: {SERVER_NAME}")
    lines.append("Date: " + datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
    for name, value in headers or ():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class TransportSpec:
    """What a client asked for in its ``Transport`` header (the first TCP-interleaved option)."""

    tcp: bool
    interleaved: tuple[int, int] | None
    raw: str


def parse_transport(value: str) -> TransportSpec | None:
    """Pick the first RTP/AVP/TCP option; None when the client only offers UDP/multicast."""
    for option in value.split(","):
        params = [p.strip() for p in option.split(";") if p.strip()]
        if not params:
            continue
        proto = params[0].upper()
        if not proto.startswith("RTP/AVP"):
            continue
        tcp = proto == "RTP/AVP/TCP"
        interleaved: tuple[int, int] | None = None
        for p in params[1:]:
            key, _, val = p.partition("=")
            if key.lower() == "interleaved" and val:
                lo, _, hi = val.partition("-")
                try:
                    a = int(lo)
                    b = int(hi) if hi else a + 1
                except ValueError:
                    return None
                if not (0 <= a <= 255 and 0 <= b <= 255):
                    return None
                interleaved = (a, b)
        if tcp:
            return TransportSpec(tcp=True, interleaved=interleaved, raw=option.strip())
    return None


@dataclass
class Target:
    """What an RTSP URL addresses on this server."""

    camera: str | None
    replay: bool = False
    track: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    query: dict[str, list[str]] = field(default_factory=dict)


_TRACK_RE = re.compile(r"^(trackID=\d+|track\d+|stream=\d+)$", re.IGNORECASE)
_STREAMING_RE = re.compile(r"^Streaming/(Channels|tracks)/(\d+)$", re.IGNORECASE)


def url_path(url: str) -> tuple[str, str]:
    """(path, query) of an RTSP URL or a bare path."""
    parts = urlsplit(url)
    if parts.scheme:
        return unquote(parts.path or "/"), parts.query
    path, _, query = url.partition("?")
    return unquote(path or "/"), query


def parse_target(url: str, device_camera: str | None = None) -> Target:
    """Map a request URL to a camera and live/replay.

    Accepted paths (an optional trailing ``/trackID=N`` is ignored):
      ``/<name>``, ``/<name>/Streaming/Channels/101`` (live),
      ``/<name>/Streaming/tracks/101?starttime=..&endtime=..`` (replay);
    on a device port (``device_camera`` set) the Hikvision paths without a name prefix.
    """
    path, query = url_path(url)
    segments = [s for s in path.split("/") if s]
    qs = parse_qs(query, keep_blank_values=True)
    track = None
    if segments and _TRACK_RE.match(segments[-1]):
        track = segments.pop()
    if not segments:
        return Target(camera=device_camera, track=track, query=qs)
    if device_camera is not None and segments[0].lower() == "streaming":
        camera: str | None = device_camera
        rest = segments
    else:
        camera = segments[0]
        rest = segments[1:]
    target = Target(camera=camera, track=track, query=qs)
    if not rest:
        return target
    m = _STREAMING_RE.match("/".join(rest))
    if m is None:
        return Target(camera=None, query=qs)
    kind, channel = m.group(1).lower(), m.group(2)
    if channel not in ("101", "102", "1", "2", "201"):
        return Target(camera=None, query=qs)
    if kind == "tracks":
        target.replay = True
        target.start = parse_time(_first(qs, "starttime"))
        target.end = parse_time(_first(qs, "endtime"))
    return target


def _first(qs: dict[str, list[str]], key: str) -> str | None:
    for k, v in qs.items():
        if k.lower() == key and v:
            return v[0]
    return None


_TIME_FORMATS = ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S")


def parse_time(value: str | None) -> datetime | None:
    """Parse ``YYYYMMDDTHHMMSSZ`` (Hikvision) or RFC 3339; naive values are UTC."""
    if not value:
        return None
    value = value.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_hik_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
