"""Unit tests for the camera simulator's protocol pieces (no network, no ffmpeg)."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest

from heldar.fakecam.auth import Authenticator, Credentials
from heldar.fakecam.encoder import SharedEncoder
from heldar.fakecam.faults import CameraPath, FaultMode
from heldar.fakecam.h264 import (
    MAX_RTP_PAYLOAD,
    RTP_CLOCK,
    AccessUnit,
    AnnexBParser,
    build_sdp,
    packetize,
)
from heldar.fakecam.rtsp import parse_request_head, parse_target, parse_transport

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xAB])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
AUD = bytes([0x09, 0xF0])


def idr(size: int = 40) -> bytes:
    return bytes([0x65, 0x88]) + bytes(range(1, 256))[: size - 2]


def slice_(first_mb_zero: bool = True) -> bytes:
    return bytes([0x41, 0x9A if first_mb_zero else 0x1A, 1, 2, 3])


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def test_annexb_parser_splits_access_units_across_chunks() -> None:
    stream = annexb(AUD, SPS, PPS, idr(), AUD, slice_(), AUD, slice_(), slice_(first_mb_zero=False), AUD)
    parser = AnnexBParser()
    aus = []
    for i in range(0, len(stream), 7):
        aus += parser.feed(stream[i : i + 7])
    # The last picture is complete only once the next NAL unit starts (one frame of latency).
    assert len(aus) == 2
    aus += parser.feed(annexb(slice_()))
    assert len(aus) == 3
    assert aus[0] == [SPS, PPS, idr()]
    assert aus[1] == [slice_()]
    assert aus[2] == [slice_(), slice_(first_mb_zero=False)]  # two slices of one picture
    assert parser.sps == SPS and parser.pps == PPS


def test_annexb_parser_without_delimiters_uses_first_mb() -> None:
    parser = AnnexBParser()
    aus = parser.feed(annexb(SPS, PPS, idr(), slice_(), slice_(), slice_()))
    aus += parser.flush()
    assert [len(au) for au in aus] == [3, 1, 1, 1]


def test_packetize_single_and_fu_a() -> None:
    big = bytes([0x65]) + bytes(i % 251 for i in range(3 * MAX_RTP_PAYLOAD))
    packets = packetize([SPS, big], rtp_ts=12345, first_seq=65534, ssrc=0xDEADBEEF)
    headers = [struct.unpack("!BBHII", p[:12]) for p in packets]
    assert [h[2] for h in headers] == [(65534 + i) & 0xFFFF for i in range(len(packets))]
    assert all(h[3] == 12345 and h[4] == 0xDEADBEEF and h[1] & 0x7F == 96 for h in headers)
    assert [bool(h[1] & 0x80) for h in headers] == [False] * (len(packets) - 1) + [True]
    assert packets[0][12:] == SPS
    assert all(len(p) - 12 <= MAX_RTP_PAYLOAD for p in packets)
    # Reassemble the FU-A fragments.
    fragments = [p[12:] for p in packets[1:]]
    assert all(f[0] & 0x1F == 28 for f in fragments)
    assert fragments[0][1] & 0x80 and fragments[-1][1] & 0x40
    rebuilt = bytes([(fragments[0][0] & 0xE0) | (fragments[0][1] & 0x1F)]) + b"".join(f[2:] for f in fragments)
    assert rebuilt == big


def test_access_unit_framing_is_cached_per_channel() -> None:
    au = AccessUnit(nals=[SPS], ticks=RTP_CLOCK * 10, key=True)
    au.packets = packetize(au.nals, au.rtp_ts, 1, 2)
    framed = au.framed(2)
    assert framed[:2] == b"$\x02" and int.from_bytes(framed[2:4], "big") == len(au.packets[0])
    assert au.framed(2) is framed
    au.release_packets()
    assert au.packets is None


def test_sdp_has_h264_fmtp() -> None:
    sdp = build_sdp(
        sps=SPS, pps=PPS, control="rtsp://h/cam/trackID=1", session_id=1, host="127.0.0.1", name="cam",
        range_line="a=range:npt=0-",
    )  # fmt: skip
    assert "a=rtpmap:96 H264/90000" in sdp
    assert "profile-level-id=42C01E" in sdp
    sprop = base64.b64encode(SPS).decode() + "," + base64.b64encode(PPS).decode()
    assert f"sprop-parameter-sets={sprop}" in sdp and "packetization-mode=1" in sdp


def test_parse_target_forms() -> None:
    live = parse_target("rtsp://1.2.3.4:554/cam1")
    assert (live.camera, live.replay) == ("cam1", False)
    track = parse_target("rtsp://1.2.3.4:554/cam1/trackID=1")
    assert (track.camera, track.track) == ("cam1", "trackID=1")
    alias = parse_target("rtsp://h/cam1/Streaming/Channels/101")
    assert (alias.camera, alias.replay) == ("cam1", False)
    replay = parse_target(
        "rtsp://h/cam1/Streaming/tracks/101/trackID=1?starttime=20240102T030405Z&endtime=20240102T030415Z"
    )
    assert replay.camera == "cam1" and replay.replay
    assert replay.start == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert replay.end == replay.start + timedelta(seconds=10)
    device = parse_target("rtsp://h/Streaming/tracks/102?starttime=20240102T030405Z&endtime=20240102T030415Z", "dev")
    assert device.camera == "dev" and device.replay
    assert parse_target("rtsp://h/cam1/whatever").camera is None


def test_parse_transport() -> None:
    assert parse_transport("RTP/AVP;unicast;client_port=5000-5001") is None
    spec = parse_transport("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=2-3")
    assert spec is not None and spec.interleaved == (2, 3)
    spec = parse_transport("RTP/AVP/TCP;unicast")
    assert spec is not None and spec.interleaved is None


def test_parse_request_head() -> None:
    req = parse_request_head(b"SETUP rtsp://h/c/trackID=1 RTSP/1.0\r\nCSeq: 3\r\nSession: ABC;timeout=60\r\n")
    assert req.method == "SETUP" and req.cseq == "3" and req.session_id == "ABC"


def _digest_header(auth: Authenticator, creds: Credentials, method: str, uri: str, qop: bool) -> str:
    challenge = auth.challenges(creds)[0]
    nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{creds.username}:{auth.realm}:{creds.password}")
    ha2 = md5(f"{method}:{uri}")
    if qop:
        response = md5(f"{ha1}:{nonce}:00000001:abcd:auth:{ha2}")
        extra = ', qop=auth, nc=00000001, cnonce="abcd"'
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    return (
        f'Digest username="{creds.username}", realm="{auth.realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}"{extra}'
    )


@pytest.mark.parametrize("qop", [False, True])
def test_digest_auth(qop: bool) -> None:
    auth = Authenticator()
    creds = Credentials("admin", "pw")
    header = _digest_header(auth, creds, "DESCRIBE", "rtsp://h/cam", qop)
    assert auth.check(creds, "DESCRIBE", header)
    assert not auth.check(creds, "SETUP", header)  # the method is part of the digest
    assert not auth.check(Credentials("admin", "other"), "DESCRIBE", header)
    assert not auth.check(Credentials("admin", "pw", "basic"), "DESCRIBE", header)


def test_basic_auth() -> None:
    auth = Authenticator()
    creds = Credentials("admin", "p:w", "basic")
    good = "Basic " + base64.b64encode(b"admin:p:w").decode()
    assert auth.check(creds, "DESCRIBE", good)
    assert not auth.check(creds, "DESCRIBE", "Basic " + base64.b64encode(b"admin:nope").decode())
    assert not auth.check(Credentials("admin", "p:w", "digest"), "DESCRIBE", good)
    assert auth.challenges(creds) == [f'Basic realm="{auth.realm}"']


def test_ground_truth_follows_faults() -> None:
    cam = CameraPath.create("c")
    t0 = cam.truth[0][0]
    assert t0 is not None
    cam.apply(FaultMode.REFUSE, t0 + timedelta(seconds=1))
    cam.apply(FaultMode.DOWN, t0 + timedelta(seconds=2))
    cam.apply(FaultMode.STALL, t0 + timedelta(seconds=3))
    cam.apply(FaultMode.RESUME, t0 + timedelta(seconds=5))
    cam.apply(FaultMode.DROP, t0 + timedelta(seconds=6))
    offsets = [
        (round((s - t0).total_seconds()), None if e is None else round((e - t0).total_seconds()))
        for s, e in cam.truth_intervals()
    ]
    assert offsets == [(0, 2), (5, 6), (6, None)]
    assert cam.mode is FaultMode.NORMAL and cam.unstalled.is_set()
    with pytest.raises(ValueError):
        cam.apply(FaultMode.NORMAL)


def test_footage_window_starts_at_keyframe() -> None:
    enc = SharedEncoder(replay_seconds=60)
    base = 1_700_000_000 * RTP_CLOCK
    for i in range(45):  # 3 s at 15 fps, keyframe every 15
        enc.footage.append(AccessUnit(nals=[b"x"], ticks=base + i * 6000, key=i % 15 == 0))
    window = enc.footage_window(1_700_000_001.5, 1_700_000_002.5)
    assert window[0].key and window[0].wall == 1_700_000_001.0
    assert window[-1].wall < 1_700_000_002.5
    assert len(window) == 23
    assert enc.footage_window(1_600_000_000, 1_600_000_010) == []
