"""H.264 Annex-B parsing and RTP packetization (RFC 3550 / RFC 6184).

The simulator encodes once and fans out the same bytes to every session, so an
access unit carries its RTP packets (built once) and caches the interleaved
framing (RFC 2326 section 10.12) per channel.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_FU_A = 28

RTP_CLOCK = 90_000
RTP_PAYLOAD_TYPE = 96
MAX_RTP_PAYLOAD = 1400
# Seconds between 1900-01-01 (NTP epoch) and 1970-01-01 (Unix epoch).
NTP_UNIX_OFFSET = 2_208_988_800


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def _is_vcl(kind: int) -> bool:
    return 1 <= kind <= 5


def _first_mb_is_zero(nal: bytes) -> bool:
    """True when a slice starts a new picture (``first_mb_in_slice`` == 0, i.e. ue(v) bit '1')."""
    return len(nal) > 1 and bool(nal[1] & 0x80)


@dataclass(eq=False)
class AccessUnit:
    """One encoded picture: its NAL units (no start codes) and its capture time.

    ``ticks`` is the capture time on a 90 kHz clock since the Unix epoch; the RTP
    timestamp is its low 32 bits, so live and replay timestamps both derive from
    the original capture time.
    """

    nals: list[bytes]
    ticks: int
    key: bool
    packets: list[bytes] | None = None
    first_seq: int = 0
    rtcp: bytes | None = None
    _framed: dict[int, bytes] = field(default_factory=dict, repr=False)

    @property
    def wall(self) -> float:
        """Capture time, seconds since the Unix epoch (UTC)."""
        return self.ticks / RTP_CLOCK

    @property
    def rtp_ts(self) -> int:
        return self.ticks & 0xFFFFFFFF

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.nals)

    def framed(self, channel: int) -> bytes:
        """The AU's shared RTP packets (and RTCP, if any) with interleave headers for ``channel``."""
        cached = self._framed.get(channel)
        if cached is None:
            parts: list[bytes] = []
            if self.rtcp is not None:
                parts.append(interleave(channel + 1, self.rtcp))
            parts.extend(interleave(channel, p) for p in self.packets or ())
            cached = b"".join(parts)
            self._framed[channel] = cached
        return cached

    def release_packets(self) -> None:
        """Drop the shared packet bytes once the AU is no longer needed for live start-up."""
        self.packets = None
        self.rtcp = None
        self._framed.clear()


def interleave(channel: int, payload: bytes) -> bytes:
    return struct.pack("!cBH", b"$", channel, len(payload)) + payload


class AnnexBParser:
    """Incremental Annex-B byte stream parser yielding complete access units."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._current: list[bytes] = []
        self._has_vcl = False
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Add bytes; return the access units (lists of NALs) completed so far."""
        self._buf += data
        done: list[list[bytes]] = []
        for nal in self._pop_nals():
            self._add_nal(nal, done)
        return done

    def flush(self) -> list[list[bytes]]:
        done: list[list[bytes]] = []
        rest = bytes(self._buf)
        self._buf.clear()
        start = rest.find(b"\x00\x00\x01")
        if start >= 0:
            nal = rest[start + 3 :].rstrip(b"\x00")
            if nal:
                self._add_nal(nal, done)
        if self._current and self._has_vcl:
            done.append(self._current)
        self._current = []
        self._has_vcl = False
        return done

    def _pop_nals(self) -> Iterator[bytes]:
        buf = self._buf
        first = buf.find(b"\x00\x00\x01")
        if first < 0:
            # Keep a possible partial start code only.
            if len(buf) > 3:
                del buf[:-3]
            return
        pos = first + 3
        while True:
            nxt = buf.find(b"\x00\x00\x01", pos)
            if nxt < 0:
                break
            end = nxt
            # A 4-byte start code's leading zero (and any trailing_zero bytes) is not NAL payload.
            while end > pos and buf[end - 1] == 0:
                end -= 1
            if end > pos:
                yield bytes(buf[pos:end])
            pos = nxt + 3
        del buf[: pos - 3]

    def _add_nal(self, nal: bytes, done: list[list[bytes]]) -> None:
        kind = nal_type(nal)
        if kind == NAL_SPS:
            self.sps = nal
        elif kind == NAL_PPS:
            self.pps = nal
        starts_new = False
        if self._has_vcl:
            if kind in (NAL_AUD, NAL_SPS, NAL_PPS, NAL_SEI) or (_is_vcl(kind) and _first_mb_is_zero(nal)):
                starts_new = True
        if starts_new:
            done.append(self._current)
            self._current = []
            self._has_vcl = False
        if kind == NAL_AUD:
            return
        self._current.append(nal)
        if _is_vcl(kind):
            self._has_vcl = True


def is_keyframe(nals: Iterable[bytes]) -> bool:
    return any(nal_type(n) == NAL_IDR for n in nals)


def packetize(nals: list[bytes], rtp_ts: int, first_seq: int, ssrc: int) -> list[bytes]:
    """RTP packets for one access unit: single NAL unit packets or FU-A fragments.

    The marker bit is set on the last packet of the access unit.
    """
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= MAX_RTP_PAYLOAD:
            payloads.append(nal)
            continue
        header = nal[0]
        indicator = (header & 0xE0) | NAL_FU_A
        kind = header & 0x1F
        body = memoryview(nal)[1:]
        chunk = MAX_RTP_PAYLOAD - 2
        count = (len(body) + chunk - 1) // chunk
        for i in range(count):
            fu_header = kind
            if i == 0:
                fu_header |= 0x80
            if i == count - 1:
                fu_header |= 0x40
            payloads.append(bytes((indicator, fu_header)) + body[i * chunk : (i + 1) * chunk])
    packets = []
    last = len(payloads) - 1
    for i, payload in enumerate(payloads):
        byte1 = RTP_PAYLOAD_TYPE | (0x80 if i == last else 0)
        header = struct.pack("!BBHII", 0x80, byte1, (first_seq + i) & 0xFFFF, rtp_ts & 0xFFFFFFFF, ssrc)
        packets.append(header + payload)
    return packets


def ntp_timestamp(unix_seconds: float) -> int:
    """64-bit NTP timestamp for a Unix time."""
    whole = int(unix_seconds)
    frac = int((unix_seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole + NTP_UNIX_OFFSET) << 32) | frac


def rtcp_sender_report(ssrc: int, unix_seconds: float, rtp_ts: int, packets: int, octets: int) -> bytes:
    """An RTCP SR (RFC 3550 6.4.1) without report blocks."""
    ntp = ntp_timestamp(unix_seconds)
    return struct.pack(
        "!BBHIIIIII",
        0x80,
        200,
        6,
        ssrc,
        ntp >> 32,
        ntp & 0xFFFFFFFF,
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )


def rtcp_bye(ssrc: int) -> bytes:
    """An RTCP BYE for one source."""
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def sprop_parameter_sets(sps: bytes, pps: bytes) -> str:
    return f"{base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}"


def profile_level_id(sps: bytes) -> str:
    return sps[1:4].hex().upper()


def build_sdp(*, sps: bytes, pps: bytes, control: str, session_id: int, host: str, name: str, range_line: str) -> str:
    """A single-track H.264 SDP (RFC 4566 / RFC 6184 section 8.2)."""
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 {host}",
        f"s={name}",
        f"c=IN IP4 {host if _looks_ipv4(host) else '0.0.0.0'}",
        "t=0 0",
        "a=tool:heldar-fakecam",
        range_line,
        "a=control:*",
        f"m=video 0 RTP/AVP {RTP_PAYLOAD_TYPE}",
        f"a=rtpmap:{RTP_PAYLOAD_TYPE} H264/{RTP_CLOCK}",
        f"a=fmtp:{RTP_PAYLOAD_TYPE} packetization-mode=1; "
        f"sprop-parameter-sets={sprop_parameter_sets(sps, pps)}; profile-level-id={profile_level_id(sps)}",
        "a=recvonly",
        f"a=control:{control}",
    ]
    return "\r\n".join(lines) + "\r\n"


def _looks_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def now_ticks() -> int:
    return round(time.time() * RTP_CLOCK)
