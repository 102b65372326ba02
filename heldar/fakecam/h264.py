"""Annex-B parsing and RTP packetization (RFC 3550; H.264 RFC 6184, H.265 RFC 7798 through
:mod:`heldar.fakecam.codecs`).

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

from heldar.fakecam.codecs import H264, VideoCodec

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
    audio: list[bytes] | None = None  # RTP packets of the audio track sent with this picture (if any)
    sent: float = 0.0  # wall clock (Unix s) when the simulator handed it to its live sessions
    audio_rtcp: bytes | None = None
    _framed: dict[tuple[int, int | None], bytes] = field(default_factory=dict, repr=False)

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

    def framed(self, channel: int, audio_channel: int | None = None) -> bytes:
        """The AU's shared RTP packets (and RTCP, if any) with interleave headers for ``channel``; with
        ``audio_channel``, the audio packets that go with it too."""
        key = (channel, audio_channel)
        cached = self._framed.get(key)
        if cached is None:
            parts: list[bytes] = []
            if self.rtcp is not None:
                parts.append(interleave(channel + 1, self.rtcp))
            parts.extend(interleave(channel, p) for p in self.packets or ())
            if audio_channel is not None:
                if self.audio_rtcp is not None:
                    parts.append(interleave(audio_channel + 1, self.audio_rtcp))
                parts.extend(interleave(audio_channel, p) for p in self.audio or ())
            cached = b"".join(parts)
            self._framed[key] = cached
        return cached

    def release_packets(self) -> None:
        """Drop the shared packet bytes once the AU is no longer needed for live start-up."""
        self.packets = None
        self.rtcp = None
        self.audio = None
        self.audio_rtcp = None
        self._framed.clear()


def interleave(channel: int, payload: bytes) -> bytes:
    return struct.pack("!cBH", b"$", channel, len(payload)) + payload


class AnnexBParser:
    """Incremental Annex-B byte stream parser yielding complete access units (H.264 by default)."""

    def __init__(self, codec: VideoCodec = H264) -> None:
        self.codec = codec
        self._buf = bytearray()
        self._current: list[bytes] = []
        self._has_vcl = False
        self.params: dict[int, bytes] = {}  # the latest parameter set of each kind (SPS, PPS; VPS for H.265)

    @property
    def sps(self) -> bytes | None:
        return self.params.get(self.codec.param_types[-2])

    @property
    def pps(self) -> bytes | None:
        return self.params.get(self.codec.param_types[-1])

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
        codec = self.codec
        if len(nal) < codec.header_bytes:
            return
        kind = codec.nal_type(nal)
        vcl = codec.is_vcl(kind)
        if kind in codec.param_types:
            self.params[kind] = nal
        starts_new = False
        if self._has_vcl:
            if kind == codec.aud or kind in codec.param_types or kind in codec.sei:
                starts_new = True
            elif vcl and codec.starts_picture(nal):
                starts_new = True
        if starts_new:
            done.append(self._current)
            self._current = []
            self._has_vcl = False
        if kind == codec.aud:
            return
        self._current.append(nal)
        if vcl:
            self._has_vcl = True


def is_keyframe(nals: Iterable[bytes], codec: VideoCodec = H264) -> bool:
    return codec.is_keyframe(nals)


def packetize(nals: list[bytes], rtp_ts: int, first_seq: int, ssrc: int, codec: VideoCodec = H264) -> list[bytes]:
    """RTP packets for one access unit: single NAL unit packets or FU-A (H.264) / FU (H.265) fragments.

    The marker bit is set on the last packet of the access unit.
    """
    return rtp_packets(codec.rtp_payloads(nals, MAX_RTP_PAYLOAD), rtp_ts, first_seq, ssrc)


def rtp_packets(
    payloads: list[bytes], rtp_ts: int, first_seq: int, ssrc: int, payload_type: int = RTP_PAYLOAD_TYPE,
    marker_last: bool = True,
) -> list[bytes]:  # fmt: skip
    """RTP packets (RFC 3550 fixed header, no CSRC) around ready payloads; marker on the last when asked."""
    packets = []
    last = len(payloads) - 1 if marker_last else -1
    ts = rtp_ts & 0xFFFFFFFF
    for i, payload in enumerate(payloads):
        byte1 = payload_type | (0x80 if i == last else 0)
        packets.append(struct.pack("!BBHII", 0x80, byte1, (first_seq + i) & 0xFFFF, ts, ssrc) + payload)
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


@dataclass(frozen=True)
class SdpAudio:
    """An audio track for :func:`build_sdp`: static payload type, encoding name, clock, its control URL."""

    payload_type: int
    encoding: str
    clock: int
    control: str


def build_sdp(
    *, sps: bytes | None = None, pps: bytes | None = None, control: str, session_id: int, host: str, name: str,
    range_line: str, codec: VideoCodec = H264, params: dict[int, bytes] | None = None, audio: SdpAudio | None = None,
) -> str:  # fmt: skip
    """An SDP with one video track (RFC 4566; H.264 RFC 6184 section 8.2 from ``sps``/``pps``, or any codec
    from ``params``) and optionally one audio track (G.711: RFC 3551 static payload types)."""
    if params is None:
        assert sps is not None and pps is not None, "give sps and pps, or params"
        params = {7: sps, 8: pps}
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
        f"a=rtpmap:{RTP_PAYLOAD_TYPE} {codec.rtp_name}/{RTP_CLOCK}",
        f"a=fmtp:{RTP_PAYLOAD_TYPE} {codec.fmtp(params)}",
        "a=recvonly",
        f"a=control:{control}",
    ]
    if audio is not None:
        lines += [
            f"m=audio 0 RTP/AVP {audio.payload_type}",
            f"a=rtpmap:{audio.payload_type} {audio.encoding}/{audio.clock}",
            "a=recvonly",
            f"a=control:{audio.control}",
        ]
    return "\r\n".join(lines) + "\r\n"


def _looks_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def now_ticks() -> int:
    return round(time.time() * RTP_CLOCK)
