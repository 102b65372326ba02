"""A G.711 audio track for simulated cameras: a 400 Hz tone, 8 kHz mono, in 20 ms RTP packets (RFC 3551).

The tone is encoded once by ffmpeg (one second: 400 whole periods, so it loops without a click). Packets are
cut on the wall clock, like the video's capture times: the RTP timestamp is the sample index since the Unix
epoch (low 32 bits), so the audio and video timestamps of one instant agree and an RTCP sender report maps
both to NTP time.
"""

from __future__ import annotations

import logging
import random
import subprocess
from dataclasses import dataclass
from functools import cache

from heldar.fakecam.h264 import rtcp_sender_report, rtp_packets
from heldar.fakecam.source import AUDIO_CODECS, AudioCodecName
from heldar.media.binary import ffmpeg_exe

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8000
PACKET_SAMPLES = 160  # 20 ms
TONE_HZ = 400
RESYNC_S = 1.0
SR_INTERVAL_S = 5.0


@dataclass(frozen=True)
class G711:
    codec: AudioCodecName
    payload_type: int  # RFC 3551 static payload type
    encoding: str  # rtpmap name
    ffmpeg_format: str


G711_CODECS = {
    "pcm_alaw": G711("pcm_alaw", 8, "PCMA", "alaw"),
    "pcm_mulaw": G711("pcm_mulaw", 0, "PCMU", "mulaw"),
}
assert set(G711_CODECS) == set(AUDIO_CODECS)


@cache
def tone(codec: AudioCodecName) -> bytes:
    """One second of the tone, G.711-encoded (one byte per sample)."""
    spec = G711_CODECS[codec]
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", f"sine=frequency={TONE_HZ}:sample_rate={SAMPLE_RATE}:duration=1", "-ac", "1",
         "-c:a", spec.codec, "-f", spec.ffmpeg_format, "pipe:1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    data = proc.stdout[:SAMPLE_RATE]
    if len(data) != SAMPLE_RATE:
        raise RuntimeError(f"ffmpeg gave {len(data)} bytes of {spec.codec} for one second")
    return data


class AudioTrack:
    """Cuts the tone into RTP packets up to a given wall-clock time (called once per video picture)."""

    def __init__(self, codec: AudioCodecName) -> None:
        self.spec = G711_CODECS[codec]
        self.samples = tone(codec) * 2  # a packet may wrap around the one-second loop
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._next: int | None = None  # the next sample to send (index since the Unix epoch)
        self._packets_sent = 0
        self._octets_sent = 0
        self._last_sr = 0.0

    def until(self, wall: float) -> tuple[list[bytes], bytes | None]:
        """The packets whose samples all lie before ``wall`` (Unix seconds) and not sent yet, plus an RTCP
        sender report every few seconds (else None)."""
        end = int(wall * SAMPLE_RATE)
        if self._next is None or abs(end - self._next) > RESYNC_S * SAMPLE_RATE:
            self._next = end - end % PACKET_SAMPLES  # start (or resync) on the clock
        payloads = []
        start = self._next
        while self._next + PACKET_SAMPLES <= end:
            offset = self._next % SAMPLE_RATE
            payloads.append(self.samples[offset : offset + PACKET_SAMPLES])
            self._next += PACKET_SAMPLES
        sr = None
        if payloads and wall - self._last_sr >= SR_INTERVAL_S:
            sr = rtcp_sender_report(self.ssrc, start / SAMPLE_RATE, start, self._packets_sent, self._octets_sent)
            self._last_sr = wall
        pt = self.spec.payload_type
        packets = [
            rtp_packets([payload], start + i * PACKET_SAMPLES, self._seq + i, self.ssrc, pt, marker_last=False)[0]
            for i, payload in enumerate(payloads)
        ]  # each packet's timestamp is its first sample
        self._seq = (self._seq + len(packets)) & 0xFFFF
        self._packets_sent += len(packets)
        self._octets_sent += len(payloads) * PACKET_SAMPLES
        return packets, sr
