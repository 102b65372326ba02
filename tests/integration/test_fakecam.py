"""The camera simulator judged by independent clients: ffmpeg, OpenCV and PyAV (no mocks)."""

from __future__ import annotations

import json
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread
from heldar.media.binary import ffmpeg_exe

pytestmark = pytest.mark.integration

USER, PASSWORD = "admin", "s3cret:pw"


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    started = time.monotonic()
    runner = FakeCamSimThread(host="127.0.0.1", port=0, control_port=0, replay_speed=8.0)
    with runner:
        startup = time.monotonic() - started
        print(f"fakecam started in {startup:.2f}s")
        assert startup < 3.0
        runner.add_camera("live")
        runner.add_camera("secure", USER, PASSWORD)  # offers Digest and Basic
        runner.add_camera("basic", USER, PASSWORD, auth="basic")
        runner.add_camera("digest", USER, PASSWORD, auth="digest")
        for name in ("down", "stall", "refuse", "replay", "noreplay"):
            runner.add_camera(name)
        runner.set_replay_enabled("noreplay", False)
        yield runner


def ffmpeg(*args: str, timeout: float = 30) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stderr, time.monotonic() - started


def read_live(url: str, seconds: float = 1.0, timeout_us: int = 5_000_000) -> tuple[int, str, float]:
    return ffmpeg(
        "-rtsp_transport", "tcp", "-timeout", str(timeout_us), "-i", url, "-t", str(seconds), "-c", "copy",
        "-f", "null", "-",
    )  # fmt: skip


def frames_in(stderr: str) -> int:
    """The last ``frame=`` count in ffmpeg's progress output."""
    count = 0
    for chunk in stderr.replace("\r", "\n").split("\n"):
        if chunk.startswith("frame="):
            try:
                count = int(chunk.split("=", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
    return count


def probe(path: Path) -> tuple[str, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        return stream.codec_context.name, stream.width, stream.height, duration


def background_reader(url: str, timeout_us: int = 2_000_000) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-rtsp_transport", "tcp", "-timeout", str(timeout_us),
         "-i", url, "-c", "copy", "-f", "null", "-"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ---------------------------------------------------------------------------- live readers


def test_ffmpeg_records_live_mp4(sim: FakeCamSimThread, tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    rc, err, elapsed = ffmpeg(
        "-rtsp_transport", "tcp", "-timeout", "5000000", "-i", sim.url("live"), "-t", "3",
        "-c", "copy", str(out),
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    codec, width, height, duration = probe(out)
    assert (codec, width, height) == ("h264", 640, 360)
    assert 2.5 <= duration <= 3.5, duration
    print(f"ffmpeg recorded {duration:.2f}s in {elapsed:.2f}s")


def test_pyav_decodes_live(sim: FakeCamSimThread) -> None:
    started = time.monotonic()
    with av.open(sim.url("live"), options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= 10:
                break
        # The sender report carries the capture clock: it is close to now.
        realtime = container.start_time_realtime
    assert frames[0].shape == (360, 640, 3)
    assert frames[0].std() > 10  # a real picture, not a blank frame
    assert realtime is not None and abs(realtime / 1e6 - time.time()) < 10
    assert time.monotonic() - started < 5


def test_opencv_reads_live(sim: FakeCamSimThread, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    cap = cv2.VideoCapture(sim.url("live"), cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened()
        shapes = []
        for _ in range(10):
            ok, frame = cap.read()
            assert ok
            shapes.append(frame.shape)
    finally:
        cap.release()
    assert shapes[-1] == (360, 640, 3)


def test_opencv_hikvision_alias_and_udp_fallback(sim: FakeCamSimThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without forcing TCP, ffmpeg first asks for UDP, gets 461 and retries over TCP."""
    import cv2

    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    cap = cv2.VideoCapture(sim.url("live") + "/Streaming/Channels/101", cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and frame.shape == (360, 640, 3)
    finally:
        cap.release()


def test_device_mode_vendor_paths(sim: FakeCamSimThread) -> None:
    sim.add_camera("device", USER, PASSWORD, device_port=0)
    url = sim.device_url("device")
    assert "/Streaming/Channels/101" in url and f":{sim.port}/" not in url
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (640, 360)
    now = datetime.now(UTC)
    replay = sim.device_url("device", replay=True).format(
        start=(now - timedelta(seconds=3)).strftime("%Y%m%dT%H%M%SZ"),
        end=(now - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ"),
    )
    with av.open(replay, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        count = sum(1 for p in container.demux(video=0) if p.size)
    assert 15 <= count <= 46  # 2 s window (+ up to 1 s back to the keyframe) at 15 fps


# ---------------------------------------------------------------------------- auth


def test_auth_wrong_password_is_401(sim: FakeCamSimThread) -> None:
    bad = sim.url("secure").replace(PASSWORD.replace(":", "%3A"), "wrong")
    assert "wrong" in bad
    _, err, _ = read_live(bad)
    assert "401" in err, err[-2000:]
    assert frames_in(err) == 0
    _, err, _ = read_live(sim.url("secure", with_credentials=False))
    assert "401" in err


@pytest.mark.parametrize("name", ["secure", "basic", "digest"])
def test_auth_right_password_works(sim: FakeCamSimThread, name: str) -> None:
    rc, err, _ = read_live(sim.url(name), seconds=0.5)
    assert rc == 0 and frames_in(err) > 0, err[-2000:]


def test_unknown_path_is_404(sim: FakeCamSimThread) -> None:
    _, err, _ = read_live(sim.url("live").replace("/live", "/nope"))
    assert "404" in err, err[-2000:]


# ---------------------------------------------------------------------------- faults


def test_down_then_resume_leaves_a_hole_in_ground_truth(sim: FakeCamSimThread) -> None:
    reader = background_reader(sim.url("down"))
    try:
        time.sleep(1.0)
        assert reader.poll() is None
        sim.set_fault("down", "down")
        down_at = time.monotonic()
        reader.wait(timeout=10)  # the running session is cut
        cut_after = time.monotonic() - down_at
        _, err, elapsed = read_live(sim.url("down"), timeout_us=2_000_000)
        assert frames_in(err) == 0 and elapsed < 5, err[-2000:]
        time.sleep(max(0.0, 1.5 - (time.monotonic() - down_at)))
        sim.set_fault("down", "resume")
        down_for = time.monotonic() - down_at
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    print(f"running reader ended {cut_after:.2f}s after down")
    assert cut_after < 5
    _, err, _ = read_live(sim.url("down"), seconds=0.5)
    assert frames_in(err) > 0, err[-2000:]
    truth = sim.truth("down")
    assert len(truth) == 2 and truth[-1][1] is None
    first_end, second_start = truth[0][1], truth[1][0]
    assert first_end is not None
    hole = (second_start - first_end).total_seconds()
    assert abs(hole - down_for) < 0.25, (hole, down_for)
    assert [ev.mode.value for ev in sim.fault_log("down")] == ["down", "resume"]


def test_stall_sends_nothing_until_resume(sim: FakeCamSimThread) -> None:
    reader = background_reader(sim.url("stall"), timeout_us=2_000_000)
    try:
        time.sleep(1.0)
        assert reader.poll() is None
        sim.set_fault("stall", "stall")
        stalled_at = time.monotonic()
        # A new client gets no RTSP reply either: ffmpeg gives up on its socket timeout.
        _, err, elapsed = read_live(sim.url("stall"), timeout_us=1_000_000)
        assert frames_in(err) == 0 and elapsed < 6, err[-2000:]
        reader.wait(timeout=10)
        ended_after = time.monotonic() - stalled_at
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        sim.set_fault("stall", "resume")
    print(f"stalled reader gave up after {ended_after:.2f}s")
    assert ended_after < 8  # ffmpeg: 2 s read timeout, then 2 s waiting for its TEARDOWN reply
    _, err, _ = read_live(sim.url("stall"), seconds=0.5)
    assert frames_in(err) > 0
    truth = sim.truth("stall")
    assert len(truth) == 2 and truth[0][1] is not None and truth[1][1] is None


def test_refuse_keeps_running_sessions_and_503s_new_ones(sim: FakeCamSimThread) -> None:
    with av.open(sim.url("refuse"), options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        packets = container.demux(video=0)
        next(packets)
        sim.set_fault("refuse", "refuse")
        try:
            _, err, _ = read_live(sim.url("refuse"))
            assert "503" in err and frames_in(err) == 0, err[-2000:]
            before = time.monotonic()
            got = 0
            while time.monotonic() - before < 1.0:
                next(packets)
                got += 1
            assert got >= 10  # the existing session keeps flowing
        finally:
            sim.set_fault("refuse", "resume")
    assert len(sim.truth("refuse")) == 1  # refusing new sessions is still serving


def test_drop_cuts_once_and_accepts_again(sim: FakeCamSimThread) -> None:
    reader = background_reader(sim.url("live"))
    try:
        time.sleep(0.8)
        sim.set_fault("live", "drop")
        reader.wait(timeout=10)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    _, err, _ = read_live(sim.url("live"), seconds=0.5)
    assert frames_in(err) > 0
    truth = sim.truth("live")
    assert truth[-2][1] == truth[-1][0] and truth[-1][1] is None


# ---------------------------------------------------------------------------- replay


def test_replay_serves_past_window_faster_than_real_time(sim: FakeCamSimThread, tmp_path: Path) -> None:
    span = sim.footage_span()
    assert span is not None
    if span[1] - span[0] < 6:
        time.sleep(6 - (span[1] - span[0]))
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(seconds=5), now - timedelta(seconds=2)
    url = sim.replay_url_template("replay").format(
        start=start.strftime("%Y%m%dT%H%M%SZ"), end=end.strftime("%Y%m%dT%H%M%SZ")
    )
    out = tmp_path / "replay.mp4"
    rc, err, elapsed = ffmpeg("-rtsp_transport", "tcp", "-timeout", "5000000", "-i", url, "-c", "copy", str(out))
    assert rc == 0 and out.exists(), err[-2000:]
    codec, width, height, duration = probe(out)
    print(f"replayed {duration:.2f}s of footage in {elapsed:.2f}s")
    assert codec == "h264" and (width, height) == (640, 360)
    assert 2.8 <= duration <= 4.2, duration  # window plus up to 1 s back to the keyframe
    assert elapsed < 3.0  # 8x: well under the 3 s window


def test_replay_carries_capture_time(sim: FakeCamSimThread) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(seconds=4), now - timedelta(seconds=2)
    url = sim.replay_url("replay", start, end)
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        realtime = container.start_time_realtime
    assert packets[0].is_keyframe
    assert realtime is not None
    first = datetime.fromtimestamp(realtime / 1e6, UTC)
    # The first frame is the keyframe at or before starttime (keyframe every second).
    assert start - timedelta(seconds=1.1) <= first <= start + timedelta(seconds=0.1), (first, start)


def test_replay_errors(sim: FakeCamSimThread) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    _, err, _ = read_live(sim.replay_url("replay", long_ago, long_ago + timedelta(seconds=10)))
    assert "404" in err, err[-2000:]
    now = datetime.now(UTC)
    _, err, _ = read_live(sim.replay_url("noreplay", now - timedelta(seconds=4), now - timedelta(seconds=2)))
    assert "503" in err, err[-2000:]


# ---------------------------------------------------------------------------- control port


def test_http_control_round_trip(sim: FakeCamSimThread) -> None:
    base = f"http://127.0.0.1:{sim.control_port}"
    status, body = http("POST", f"{base}/cameras", {"name": "ctl", "username": "u", "password": "p"})
    assert status == 201 and body["url"].endswith("/ctl")
    status, body = http("GET", f"{base}/cameras")
    assert status == 200 and "ctl" in {c["name"] for c in body["cameras"]}
    status, body = http("POST", f"{base}/cameras", {"name": "ctl"})
    assert status == 409 and "error" in body
    status, body = http("POST", f"{base}/cameras/ctl/fault", {"mode": "down"})
    assert status == 200 and body["mode"] == "down"
    _, err, _ = read_live(sim.url("ctl"), timeout_us=2_000_000)
    assert frames_in(err) == 0
    status, body = http("POST", f"{base}/cameras/ctl/fault", {"mode": "resume"})
    assert status == 200 and body["mode"] == "normal"
    _, err, _ = read_live(sim.url("ctl"), seconds=0.5)
    assert frames_in(err) > 0, err[-2000:]
    status, body = http("GET", f"{base}/cameras/ctl/truth")
    assert status == 200 and len(body["serving"]) == 2 and body["serving"][0]["end"].endswith("Z")
    assert [f["mode"] for f in body["faults"]] == ["down", "resume"]
    assert http("POST", f"{base}/cameras/ctl/fault", {"mode": "explode"})[0] == 400
    assert http("GET", f"{base}/cameras/nope/truth")[0] == 404


# ---------------------------------------------------------------------------- load


def test_many_concurrent_readers_stay_cheap(sim: FakeCamSimThread) -> None:
    names = [f"load{i}" for i in range(20)]
    for name in names:
        sim.add_camera(name)
    me = psutil.Process()
    encoder = [c for c in me.children() if "ffmpeg" in c.name()]
    readers = [background_reader(sim.url(name), timeout_us=5_000_000) for name in names]
    try:
        time.sleep(2.0)  # connect
        cpu0, enc0, t0 = time.process_time(), sum(sum(c.cpu_times()[:2]) for c in encoder), time.monotonic()
        sessions = sim.session_count()
        time.sleep(3.0)
        wall = time.monotonic() - t0
        sim_cpu = (time.process_time() - cpu0) / wall
        enc_cpu = (sum(sum(c.cpu_times()[:2]) for c in encoder) - enc0) / wall
        alive = sum(1 for r in readers if r.poll() is None)
    finally:
        for r in readers:
            r.terminate()
        for r in readers:
            try:
                r.wait(timeout=5)
            except subprocess.TimeoutExpired:
                r.kill()
                r.wait()
        for name in names:
            sim.remove_camera(name)
    print(
        f"{sessions} playing sessions, {alive}/20 readers alive; simulator process "
        f"{sim_cpu * 100:.1f}% CPU (incl. test thread), encoder ffmpeg {enc_cpu * 100:.1f}% CPU"
    )
    assert alive == 20 and sessions >= 20


def test_thread_runner_is_usable_twice_and_stops_ffmpeg() -> None:
    before = {c.pid for c in psutil.Process().children()}
    with FakeCamSimThread(port=0, cameras=["a"], replay_minutes=0.1) as other:
        children = [c for c in psutil.Process().children() if c.pid not in before and "ffmpeg" in c.name()]
        assert len(children) == 1
        _, err, _ = read_live(other.url("a"), seconds=0.3)
        assert frames_in(err) > 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(c.is_running() and c.status() != "zombie" for c in children):
        time.sleep(0.05)
    assert not any(c.is_running() and c.status() != "zombie" for c in children)


# ---------------------------------------------------------------------------- raw RTSP, asyncio API


async def test_raw_rtsp_exchange_with_async_api() -> None:
    """Speak RTSP by hand against ``FakeCamSim`` used directly from asyncio."""
    import asyncio

    from heldar.fakecam import FakeCamSim

    async def request(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str
    ) -> tuple[str, dict[str, str], bytes]:
        writer.write(text.encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return lines[0], headers, body

    async with FakeCamSim(port=0, cameras=["raw"], replay_minutes=0.5) as fake:
        url = fake.url("raw")
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
        try:
            status, headers, _ = await request(reader, writer, f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            assert status == "RTSP/1.0 200 OK" and "DESCRIBE" in headers["public"] and headers["cseq"] == "1"
            status, headers, body = await request(
                reader, writer, f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"
            )
            sdp = body.decode()
            assert status.endswith("200 OK") and headers["content-type"] == "application/sdp"
            assert "a=rtpmap:96 H264/90000" in sdp and "sprop-parameter-sets=" in sdp
            control = next(ln for ln in sdp.splitlines() if ln.startswith("a=control:rtsp"))[len("a=control:") :]
            status, _, _ = await request(
                reader, writer,
                f"SETUP {control} RTSP/1.0\r\nCSeq: 3\r\n"
                "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
            )  # fmt: skip
            assert status == "RTSP/1.0 461 Unsupported Transport"
            status, headers, _ = await request(
                reader, writer,
                f"SETUP {control} RTSP/1.0\r\nCSeq: 4\r\n"
                "Transport: RTP/AVP/TCP;unicast;interleaved=4-5\r\n\r\n",
            )  # fmt: skip
            assert status.endswith("200 OK") and "interleaved=4-5" in headers["transport"]
            session = headers["session"]
            assert session.endswith(";timeout=60")
            sid = session.split(";")[0]
            status, headers, _ = await request(
                reader, writer, f"PLAY {url} RTSP/1.0\r\nCSeq: 5\r\nSession: {sid}\r\nRange: npt=0-\r\n\r\n"
            )
            assert status.endswith("200 OK") and "rtptime=" in headers["rtp-info"]
            first_seq = int(headers["rtp-info"].split("seq=")[1].split(";")[0])
            channels, markers, seqs = set(), 0, []
            while markers < 3:
                magic, channel, size = struct.unpack("!cBH", await reader.readexactly(4))
                payload = await reader.readexactly(size)
                assert magic == b"$"
                channels.add(channel)
                if channel == 4:
                    seqs.append(struct.unpack("!H", payload[2:4])[0])
                    markers += bool(payload[1] & 0x80)
            assert channels == {4, 5}  # RTP and the RTCP sender report
            assert seqs[0] == first_seq and seqs == [(first_seq + i) & 0xFFFF for i in range(len(seqs))]
            writer.write(f"TEARDOWN {url} RTSP/1.0\r\nCSeq: 6\r\nSession: {sid}\r\n\r\n".encode())
            while True:  # interleaved data may precede the reply
                first = await reader.readexactly(1)
                if first == b"$":
                    size = struct.unpack("!xH", await reader.readexactly(3))[0]
                    await reader.readexactly(size)
                    continue
                reply = first + await reader.readuntil(b"\r\n\r\n")
                break
            assert reply.startswith(b"RTSP/1.0 200 OK") and b"CSeq: 6" in reply
            assert await reader.read() == b""  # closed after the last session's TEARDOWN
        finally:
            writer.close()
