"""Stop-cause classification, checked on stderr produced by the real ffmpeg against tiny local peers."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from heldar.media.binary import ffmpeg_exe
from heldar.media.ffmpeg_errors import StopCause, classify_exit, mask_text
from heldar.media.recorder_command import recorder_env

SECRET = "s3cr3t-Pw"


class RtspPeer:
    """A TCP peer that answers RTSP requests with a fixed status (or never answers)."""

    def __init__(self, reply: Callable[[bytes, bytes], bytes | None]) -> None:
        self._reply = reply
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                request, buf = buf.split(b"\r\n\r\n", 1)
                lines = request.split(b"\r\n")
                cseq = next((ln.split(b":", 1)[1].strip() for ln in lines if ln.lower().startswith(b"cseq")), b"0")
                answer = self._reply(lines[0].split(b" ", 1)[0], cseq)
                if answer is not None:
                    conn.sendall(answer)

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()


def status_reply(status: bytes, *, options_ok: bool = True) -> Callable[[bytes, bytes], bytes | None]:
    def reply(method: bytes, cseq: bytes) -> bytes:
        if method == b"OPTIONS" and options_ok:
            return b"RTSP/1.0 200 OK\r\nCSeq: " + cseq + b"\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n"
        extra = b'WWW-Authenticate: Basic realm="cam"\r\n' if status.startswith(b"401") else b""
        return b"RTSP/1.0 " + status + b"\r\nCSeq: " + cseq + b"\r\n" + extra + b"\r\n"

    return reply


def run_ffmpeg(url: str, timeout_s: float = 1.0) -> tuple[str, int]:
    proc = subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "warning",
            "-rtsp_transport",
            "tcp",
            "-timeout",
            str(int(timeout_s * 1_000_000)),
            "-i",
            url,
            "-map",
            "0:v",
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=recorder_env(),
        stdin=subprocess.DEVNULL,
    )
    return proc.stderr, proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, int]]]:
    """Real ffmpeg stderr + exit code per scenario, produced concurrently."""
    peers = {
        "401": RtspPeer(status_reply(b"401 Unauthorized")),
        "404": RtspPeer(status_reply(b"404 Not Found", options_ok=False)),
        "503": RtspPeer(status_reply(b"503 Service Unavailable")),
        "454": RtspPeer(status_reply(b"454 Session Not Found")),
        "461": RtspPeer(status_reply(b"461 Unsupported Transport")),
        "silent": RtspPeer(lambda method, cseq: None),
    }
    junk = tmp_path_factory.mktemp("junk") / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 16)
    urls = {name: f"rtsp://admin:{SECRET}@127.0.0.1:{peer.port}/Streaming/Channels/101" for name, peer in peers.items()}
    urls["refused"] = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream"
    urls["refused_ch401"] = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/Streaming/Channels/401"
    urls["dns"] = f"rtsp://admin:{SECRET}@no-such-camera.invalid:554/stream"
    urls["junk"] = str(junk)
    try:
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            futures = {name: pool.submit(run_ffmpeg, url) for name, url in urls.items()}
            yield {name: fut.result() for name, fut in futures.items()}
    finally:
        for peer in peers.values():
            peer.close()


def classify(sample: tuple[str, int], **kw: bool) -> StopCause:
    stderr, rc = sample
    return classify_exit(
        stderr,
        rc,
        killed_for_stall=kw.get("killed_for_stall", False),
        produced_output=kw.get("produced_output", False),
    )


def assert_masked(cause: StopCause) -> None:
    assert SECRET not in cause.tail and SECRET not in cause.message and SECRET not in cause.detail


def test_real_401_is_unauthorized(samples: dict[str, tuple[str, int]]) -> None:
    stderr, rc = samples["401"]
    assert SECRET in stderr and rc != 0  # ffmpeg echoes the URL with the password
    cause = classify(samples["401"])
    assert cause.code == "unauthorized"
    assert "username/password" in cause.message
    assert "admin:***@127.0.0.1" in cause.tail
    assert_masked(cause)


def test_real_404_is_not_found(samples: dict[str, tuple[str, int]]) -> None:
    cause = classify(samples["404"])
    assert cause.code == "not_found" and "404" in cause.message
    assert_masked(cause)


@pytest.mark.parametrize("scenario", ["refused", "503", "454", "461"])
def test_real_refusals(samples: dict[str, tuple[str, int]], scenario: str) -> None:
    cause = classify(samples[scenario])
    assert cause.code == "refused", cause
    if scenario != "refused":
        assert scenario in cause.message
    assert_masked(cause)


def test_status_like_numbers_in_the_url_do_not_count(samples: dict[str, tuple[str, int]]) -> None:
    stderr, _ = samples["refused_ch401"]
    assert "Channels/401" in stderr
    assert classify(samples["refused_ch401"]).code == "refused"


def test_real_silent_peer_is_timeout_not_codec(samples: dict[str, tuple[str, int]]) -> None:
    stderr, _ = samples["silent"]
    assert "Invalid data found" in stderr  # the trap: a timeout also prints this
    cause = classify(samples["silent"])
    assert cause.code == "timeout" and "timed out" in cause.message
    assert classify(samples["silent"], produced_output=True).message.startswith("camera stopped sending")


def test_real_name_resolution_is_unreachable(samples: dict[str, tuple[str, int]]) -> None:
    cause = classify(samples["dns"])
    assert cause.code == "unreachable", cause
    assert_masked(cause)


def test_real_invalid_data_is_codec(samples: dict[str, tuple[str, int]]) -> None:
    assert classify(samples["junk"]).code == "codec"


def test_stall_wins_over_everything(samples: dict[str, tuple[str, int]]) -> None:
    cause = classify(samples["401"], killed_for_stall=True)
    assert cause.code == "stall" and "restarted" in cause.message
    assert_masked(cause)


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        (
            "[tcp @ 0x1] Connection to tcp://10.0.0.9:554?timeout=5000000 failed: No route to host\n",
            "timeout",
        ),
        ("[tcp @ 0x1] Connection to tcp://10.0.0.9:554 failed: Operation timed out\n", "timeout"),
        ("[tcp @ 0x1] Connection to tcp://10.0.0.9:554 failed: Network is unreachable\n", "unreachable"),
        ("[tcp @ 0x1] Connection to tcp://10.0.0.9:554 failed: Host is unreachable\n", "unreachable"),
        ("[tcp @ 0x1] Failed to resolve hostname cam: Temporary failure in name resolution\n", "unreachable"),
        (
            "[in#0 @ 0x1] method DESCRIBE failed: 403 (Forbidden)\nServer returned 403 Forbidden (access denied)\n",
            "unauthorized",
        ),
        (
            "[rtsp @ 0x1] Could not find codec parameters for stream 0 (Video: none): unspecified size\n",
            "codec",
        ),
        (
            "[mp4 @ 0x1] Could not find tag for codec pcm_alaw in stream #1, "
            "codec not currently supported in container\n",
            "codec",
        ),
        ("[in#0 @ 0x1] Failed reading RTSP data: End of file\n", "refused"),
        ("[out#0/segment @ 0x1] some unknown complaint\n", "exited"),
        ("", "exited"),
    ],
)
def test_synthetic_lines(stderr: str, code: str) -> None:
    assert classify_exit(stderr, 1, killed_for_stall=False, produced_output=False).code == code


def test_exited_messages() -> None:
    ok = classify_exit("", 0, killed_for_stall=False, produced_output=True)
    assert ok.code == "exited" and "exited normally" in ok.message
    killed = classify_exit("", -9, killed_for_stall=False, produced_output=True)
    assert "SIGKILL" in killed.message
    odd = classify_exit("[x @ 0xdead] weird thing\n", 3, killed_for_stall=False, produced_output=False)
    assert odd.message == "ffmpeg exited with code 3: weird thing" and odd.detail == "weird thing"
    assert classify_exit("", None, killed_for_stall=False, produced_output=False).message == "ffmpeg stopped"
    dropped = classify_exit("Connection reset by peer\n", 1, killed_for_stall=False, produced_output=True)
    assert dropped.code == "refused" and dropped.message == "camera dropped the connection"


def test_tail_is_bounded_masked_and_line_aligned() -> None:
    lines = [f"line {i} rtsp://admin:{SECRET}@cam/x" for i in range(200)]
    cause = classify_exit("\n".join(lines), 1, killed_for_stall=False, produced_output=False)
    assert len(cause.tail) <= 800
    assert cause.tail.startswith("line ") and cause.tail.endswith("admin:***@cam/x")
    assert SECRET not in cause.tail


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("rtsp://admin:pw@10.0.0.1:554/x", "rtsp://admin:***@10.0.0.1:554/x"),
        ("open 'rtsps://u:p%40ss@cam/x' now", "open 'rtsps://u:***@cam/x' now"),
        ("rtsp://admin:p@ss@cam/x and http://a:b@c/d", "rtsp://admin:***@cam/x and http://a:***@c/d"),
        ("rtsp://admin:@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://cam/x rtsp://user@cam/y", "rtsp://cam/x rtsp://user@cam/y"),
        ("http://cam/cgi?user=admin&password=hunter2&x=1", "http://cam/cgi?user=admin&password=***&x=1"),
        ("no urls here: a:b@c", "no urls here: a:b@c"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_classify_is_pure() -> None:
    a = classify_exit("Connection refused", 1, killed_for_stall=False, produced_output=False)
    b = classify_exit("Connection refused", 1, killed_for_stall=False, produced_output=False)
    assert a == b


def test_real_full_disk_is_disk_full_not_codec() -> None:
    """ffmpeg writing to /dev/full (every write fails with ENOSPC) reads as ``disk_full``."""
    import subprocess

    from heldar.media.binary import ffmpeg_exe

    argv = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "warning", "-f", "lavfi",
            "-i", "testsrc=size=160x120:rate=10", "-t", "1", "-c:v", "libx264", "-f", "mpegts",
            "-y", "/dev/full"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert "No space left on device" in proc.stderr
    cause = classify_exit(proc.stderr, proc.returncode, killed_for_stall=False, produced_output=True)
    assert cause.code == "disk_full" and "full" in cause.message
    header = "[out#0/segment @ 0x1] Could not write header (incorrect codec parameters ?): No space left on device"
    assert classify_exit(header, 1, killed_for_stall=False, produced_output=False).code == "disk_full"
