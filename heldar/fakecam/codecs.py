"""What differs between H.264 (RFC 6184) and H.265 (RFC 7798) for the simulator: NAL headers, which NAL units
start a picture or are keyframes, parameter sets, RTP fragmentation and the SDP lines."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

VideoCodecName = Literal["h264", "h265"]
VIDEO_CODECS: tuple[VideoCodecName, ...] = ("h264", "h265")
MAX_RTP_PAYLOAD = 1400


@dataclass(frozen=True)
class VideoCodec:
    """One video codec's Annex-B and RTP rules (``h264`` or ``h265``)."""

    name: VideoCodecName
    rtp_name: str  # the rtpmap encoding name
    header_bytes: int  # NAL unit header length
    aud: int
    sei: frozenset[int]
    param_types: tuple[int, ...]  # parameter-set NAL types, in the order a keyframe carries them
    ffmpeg_format: str  # ffmpeg's raw elementary-stream muxer
    extension: str

    def nal_type(self, nal: bytes) -> int:
        if self.name == "h264":
            return nal[0] & 0x1F
        return (nal[0] >> 1) & 0x3F

    def is_vcl(self, kind: int) -> bool:
        return 1 <= kind <= 5 if self.name == "h264" else 0 <= kind <= 31

    def is_key_type(self, kind: int) -> bool:
        """IDR (H.264) or IRAP (H.265: BLA, IDR, CRA)."""
        return kind == 5 if self.name == "h264" else 16 <= kind <= 23

    def starts_picture(self, nal: bytes) -> bool:
        """A VCL NAL unit that begins a new picture (``first_mb_in_slice`` == 0 / ``first_slice_segment_in_pic``)."""
        index = self.header_bytes
        return len(nal) > index and bool(nal[index] & 0x80)

    def is_keyframe(self, nals: Iterable[bytes]) -> bool:
        return any(self.is_key_type(self.nal_type(n)) for n in nals)

    def rtp_payloads(self, nals: Iterable[bytes], max_payload: int = MAX_RTP_PAYLOAD) -> list[bytes]:
        """RTP payloads of one access unit: single NAL unit packets, FU-A (H.264) or FU (H.265) fragments."""
        payloads: list[bytes] = []
        hb = self.header_bytes
        for nal in nals:
            if len(nal) <= max_payload:
                payloads.append(nal)
                continue
            kind = self.nal_type(nal)
            if self.name == "h264":
                head = bytes(((nal[0] & 0xE0) | 28,))
            else:
                head = bytes(((nal[0] & 0x81) | (49 << 1), nal[1]))
            body = memoryview(nal)[hb:]
            chunk = max_payload - hb - 1
            count = (len(body) + chunk - 1) // chunk
            for i in range(count):
                fu_header = kind
                if i == 0:
                    fu_header |= 0x80
                if i == count - 1:
                    fu_header |= 0x40
                payloads.append(head + bytes((fu_header,)) + body[i * chunk : (i + 1) * chunk])
        return payloads

    def fmtp(self, params: dict[int, bytes]) -> str:
        """The ``a=fmtp`` value (without the payload type) for these parameter sets."""
        b64 = lambda kind: base64.b64encode(params[kind]).decode()  # noqa: E731
        if self.name == "h264":
            profile = params[7][1:4].hex().upper()
            return f"packetization-mode=1; sprop-parameter-sets={b64(7)},{b64(8)}; profile-level-id={profile}"
        return f"sprop-vps={b64(32)}; sprop-sps={b64(33)}; sprop-pps={b64(34)}"


H264 = VideoCodec(
    name="h264", rtp_name="H264", header_bytes=1, aud=9, sei=frozenset({6}), param_types=(7, 8),
    ffmpeg_format="h264", extension="h264",
)  # fmt: skip
H265 = VideoCodec(
    name="h265", rtp_name="H265", header_bytes=2, aud=35, sei=frozenset({39}), param_types=(32, 33, 34),
    ffmpeg_format="hevc", extension="hevc",
)  # fmt: skip


def video_codec(name: str) -> VideoCodec:
    """``h264``/``avc`` or ``h265``/``hevc``."""
    key = name.lower()
    if key in ("h264", "avc"):
        return H264
    if key in ("h265", "hevc"):
        return H265
    raise ValueError(f"video codec must be one of {', '.join(VIDEO_CODECS)}, not {name!r}")
