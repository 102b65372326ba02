"""The simulator's stream profiles and H.265 / G.711 protocol pieces (no network, no ffmpeg)."""

from __future__ import annotations

import base64
import itertools
import struct

import pytest

from heldar.fakecam.codecs import H264, H265, video_codec
from heldar.fakecam.h264 import MAX_RTP_PAYLOAD, AnnexBParser, SdpAudio, build_sdp, packetize
from heldar.fakecam.source import EncoderSettings, LoopedFileSource, StreamProfile

VPS = bytes([0x40, 0x01, 0x0C, 0x01])
SPS = bytes([0x42, 0x01, 0x01, 0x01, 0x60])
PPS = bytes([0x44, 0x01, 0xC1, 0x72])
AUD = bytes([0x46, 0x01, 0x50])


def hevc_idr(size: int = 40) -> bytes:
    return bytes([0x26, 0x01, 0xAF]) + bytes(range(1, 256))[: size - 3]  # IDR_W_RADL, first slice


def hevc_trail(first: bool = True) -> bytes:
    return bytes([0x02, 0x01, 0xD0 if first else 0x50, 1, 2])  # TRAIL_R


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def test_hevc_annexb_access_units_and_parameter_sets() -> None:
    parser = AnnexBParser(H265)
    stream = annexb(AUD, VPS, SPS, PPS, hevc_idr(), AUD, hevc_trail(), hevc_trail(first=False), AUD, hevc_trail())
    aus = parser.feed(stream) + parser.flush()
    assert aus == [[VPS, SPS, PPS, hevc_idr()], [hevc_trail(), hevc_trail(first=False)], [hevc_trail()]]
    assert parser.params == {32: VPS, 33: SPS, 34: PPS} and parser.sps == SPS and parser.pps == PPS
    assert H265.is_keyframe(aus[0]) and not H265.is_keyframe(aus[1])
    assert H265.is_key_type(21)  # CRA is a random access point too


def test_hevc_fragmentation_units_reassemble() -> None:
    big = bytes([0x26, 0x01]) + bytes(i % 251 for i in range(3 * MAX_RTP_PAYLOAD))
    packets = packetize([VPS, big], rtp_ts=7, first_seq=65535, ssrc=1, codec=H265)
    assert packets[0][12:] == VPS
    frags = [p[12:] for p in packets[1:]]
    assert all((f[0] >> 1) & 0x3F == 49 and f[1] == 0x01 for f in frags)  # FU, layer/TID kept
    assert frags[0][2] & 0x80 and frags[-1][2] & 0x40 and all(f[2] & 0x3F == 19 for f in frags)
    assert all(len(p) - 12 <= MAX_RTP_PAYLOAD for p in packets)
    rebuilt = bytes([(frags[0][0] & 0x81) | (19 << 1), frags[0][1]]) + b"".join(f[3:] for f in frags)
    assert rebuilt == big
    assert struct.unpack("!H", packets[1][2:4])[0] == 0  # sequence wraps


def test_sdp_for_h265_with_g711() -> None:
    sdp = build_sdp(
        control="rtsp://h/c/trackID=1", session_id=1, host="127.0.0.1", name="c", range_line="a=range:npt=0-",
        codec=H265, params={32: VPS, 33: SPS, 34: PPS}, audio=SdpAudio(8, "PCMA", 8000, "rtsp://h/c/trackID=2"),
    )  # fmt: skip
    lines = sdp.split("\r\n")
    assert "a=rtpmap:96 H265/90000" in lines
    assert f"a=fmtp:96 sprop-vps={base64.b64encode(VPS).decode()}; sprop-sps={base64.b64encode(SPS).decode()}; " \
        f"sprop-pps={base64.b64encode(PPS).decode()}" in lines  # fmt: skip
    audio = lines.index("m=audio 0 RTP/AVP 8")
    assert lines[audio + 1] == "a=rtpmap:8 PCMA/8000" and lines[audio + 3] == "a=control:rtsp://h/c/trackID=2"
    assert lines.index("a=control:rtsp://h/c/trackID=1") < audio


def test_looped_profile_defaults_to_a_field_camera() -> None:
    base = EncoderSettings()
    field = StreamProfile(looped=True).settings(base)
    assert (field.width, field.height, field.fps, field.gop, field.bitrate_kbps) == (1920, 1080, 15, 15, 4000)
    assert StreamProfile(looped=True, codec="h265", bitrate_kbps=8000).settings(base).codec == "h265"
    assert StreamProfile(codec="h265", audio="pcm_mulaw").settings(base) == EncoderSettings(
        codec="h265", audio="pcm_mulaw"
    )
    source = LoopedFileSource(cache_dir="/cache")
    assert source.frames(field) == 150  # ten closed 1 s GOPs: the seam is an ordinary keyframe
    path = source.clip_path(field)
    assert str(path).startswith("/cache/") and path.suffix == ".h264" and "1920x1080" in path.name
    assert source.clip_path(StreamProfile(looped=True, codec="h265").settings(base)).suffix == ".hevc"
    assert source.clip_path(StreamProfile(looped=True, bitrate_kbps=2000).settings(base)) != path  # keyed
    argv = source.encode_argv(field, path)
    assert argv[argv.index("-b:v") + 1] == "4000k" and argv[argv.index("-g") + 1] == "15"
    assert argv[argv.index("-bf") + 1] == "0" and argv[argv.index("-frames:v") + 1] == "150"


def test_profile_options_are_checked() -> None:
    assert StreamProfile.from_options({"name": "x", "auth": "any"}) is None
    assert StreamProfile.from_options({"codec": "h265", "audio": "pcm_alaw"}) == StreamProfile("h265", "pcm_alaw")
    for bad in ({"codec": "vp9"}, {"audio": "opus"}, {"width": -1}, {"fps": "15"}, {"looped": "yes"}):
        with pytest.raises(ValueError):
            StreamProfile.from_options(bad)
    assert video_codec("hevc") is H265 and video_codec("AVC") is H264


@pytest.mark.parametrize("stall_s", [2, 4])  # caught up by the burst; a jump forward, then slewed back
def test_capture_clock_stays_monotonic_through_a_stall_and_its_catch_up_burst(
    monkeypatch: pytest.MonkeyPatch, stall_s: int
) -> None:
    """ffmpeg -re delivers the frames a stall held back in a burst; the capture stamps must stay increasing (a
    backward jump gave recorded files non-monotonic timestamps) and end up on the wall clock again."""
    from heldar.fakecam import encoder as encoder_module

    enc = encoder_module.SharedEncoder(EncoderSettings(fps=15), replay_seconds=60)
    frame = 90_000 // 15
    now = [1_000_000 * 90_000]
    monkeypatch.setattr(encoder_module, "now_ticks", lambda: now[0])
    burst = stall_s * 15 - 1
    arrivals = [frame] * 30 + [90_000 * stall_s] + [0] * burst + [frame] * 240  # steady, a stall, its burst, steady
    stamps = []
    for step in arrivals:
        now[0] += step
        stamps.append(enc._stamp())
    assert all(b > a for a, b in itertools.pairwise(stamps)), "capture stamps went backwards"
    assert abs(stamps[-1] - (now[0] - frame)) <= 0.5 * 90_000  # back on the wall clock (within 0.5 s)
    assert max(b - a for a, b in itertools.pairwise(stamps)) <= stall_s * 90_000
