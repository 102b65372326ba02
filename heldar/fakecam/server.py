"""The RTSP server: many camera paths on one port, fed by shared encoders (one per stream profile in use)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from heldar.aio import wait_set
from heldar.fakecam.audio import SAMPLE_RATE
from heldar.fakecam.auth import Authenticator, AuthScheme
from heldar.fakecam.encoder import START_WAIT_S, SharedEncoder
from heldar.fakecam.faults import CameraPath, FaultEvent, FaultMode
from heldar.fakecam.h264 import (
    RTP_CLOCK,
    AccessUnit,
    SdpAudio,
    build_sdp,
    interleave,
    packetize,
    rtcp_bye,
    rtcp_sender_report,
)
from heldar.fakecam.rtsp import (
    MAX_HEADER_BYTES,
    PUBLIC_METHODS,
    RtspProtocolError,
    RtspRequest,
    Target,
    format_hik_time,
    format_response,
    parse_target,
    parse_transport,
    read_message,
)
from heldar.fakecam.source import EncoderSettings, LoopedFileSource, StreamProfile, TestPatternSource, VideoSource

logger = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 60
DEFAULT_MAX_BUFFER = 2 * 1024 * 1024
SLOW_CLIENT_SECONDS = 8.0  # a stream with a bitrate target keeps at least this much unsent for a slow client
REPLAY_LINGER_S = 5.0


@dataclass(eq=False)
class Session:
    id: str
    camera: CameraPath
    conn: Connection
    replay: bool
    control_url: str
    encoder: SharedEncoder
    channel: int = 0
    audio_channel: int | None = None  # the G.711 track's interleaved channel, once SETUP
    start: datetime | None = None
    end: datetime | None = None
    playing: bool = False
    need_key: bool = False
    ssrc: int = 0
    task: asyncio.Task[None] | None = None
    finished: bool = False
    _replay_seq: int = field(default_factory=lambda: random.getrandbits(16))


class Connection:
    """One RTSP TCP connection (its RTP is interleaved on the same socket)."""

    def __init__(
        self,
        sim: FakeCamSim,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        device_camera: str | None,
    ) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.device_camera = device_camera
        self.cameras: set[str] = set()
        self.sessions: dict[str, Session] = {}
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._close_timer: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------- plumbing
    def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.transport.write(data)
        return True

    def reply(
        self,
        req: RtspRequest,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.send(format_response(status, req.cseq, headers, body))

    def abort(self, reason: str) -> None:
        if self.closed:
            return
        logger.info("fakecam closing connection %s: %s", self.peer, reason)
        self._detach()
        self.transport.abort()

    def close(self, reason: str) -> None:
        """Graceful close: pending bytes are flushed first."""
        if self.closed:
            return
        logger.debug("fakecam closing connection %s: %s", self.peer, reason)
        self._detach()
        self.transport.close()

    def close_later(self, delay: float, reason: str) -> None:
        if self._close_timer is None and not self.closed:
            self._close_timer = asyncio.get_running_loop().call_later(delay, self.close, reason)

    def _detach(self) -> None:
        self.closed = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        for sess in self.sessions.values():
            self.sim._playing.discard(sess)
            if sess.task is not None and sess.task is not asyncio.current_task():
                sess.task.cancel()
        self.sessions.clear()
        for name in self.cameras:
            conns = self.sim._conns.get(name)
            if conns is not None:
                conns.discard(self)
        self.sim._all_conns.discard(self)

    # -------------------------------------------------------------- request loop
    async def serve(self) -> None:
        try:
            while not self.closed:
                msg = await read_message(self.reader)
                if msg is None:
                    break
                if isinstance(msg, tuple):
                    continue  # RTCP receiver reports from the client: ignored
                await self._handle(msg)
        except RtspProtocolError as exc:
            logger.info("fakecam bad request from %s: %s", self.peer, exc)
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.closed:
                self.close("client closed")

    def _session_for(self, req: RtspRequest) -> Session | None:
        sid = req.session_id
        if sid is None:
            return None
        return self.sessions.get(sid)

    async def _handle(self, req: RtspRequest) -> None:
        if req.version != "RTSP/1.0":
            self.reply(req, 505)
            return
        sess = self._session_for(req)
        target: Target | None = None
        cam: CameraPath | None = None
        if req.url != "*":
            target = parse_target(req.url, self.device_camera)
            if target.camera is not None:
                cam = self.sim.cameras.get(target.camera)
        if cam is None and sess is not None:
            cam = sess.camera
        if cam is not None:
            self._touch(cam)
            if cam.mode is FaultMode.DOWN:
                self.abort(f"camera {cam.name} is down")
                return
            if not cam.unstalled.is_set():
                await cam.unstalled.wait()
                if self.closed:
                    return
                if cam.mode is FaultMode.DOWN:
                    self.abort(f"camera {cam.name} is down")
                    return
        method = req.method
        if method == "OPTIONS":
            self.reply(req, 200, [("Public", PUBLIC_METHODS)])
            return
        if method in ("GET_PARAMETER", "SET_PARAMETER"):
            headers = self._session_header(sess)
            self.reply(req, 200, headers)
            return
        if method == "TEARDOWN":
            await self._teardown(req, sess)
            return
        if method not in ("DESCRIBE", "SETUP", "PLAY", "PAUSE"):
            self.reply(req, 501, [("Public", PUBLIC_METHODS)])
            return
        if method in ("PLAY", "PAUSE"):
            if sess is None:
                self.reply(req, 454)
                return
            cam = sess.camera
        elif cam is None or target is None:
            self.reply(req, 404)
            return
        if not self._authorized(req, cam):
            return
        if method == "DESCRIBE":
            assert target is not None
            await self._describe(req, cam, target)
        elif method == "SETUP":
            assert target is not None
            self._setup(req, cam, target, sess)
        elif method == "PLAY":
            assert sess is not None
            self._play(req, sess)
        else:
            assert sess is not None
            self._pause(req, sess)

    def _touch(self, cam: CameraPath) -> None:
        if cam.name not in self.cameras:
            self.cameras.add(cam.name)
            self.sim._conns.setdefault(cam.name, set()).add(self)

    def _session_header(self, sess: Session | None) -> list[tuple[str, str]]:
        if sess is None:
            return []
        return [("Session", f"{sess.id};timeout={SESSION_TIMEOUT_S}")]

    def _authorized(self, req: RtspRequest, cam: CameraPath) -> bool:
        creds = cam.credentials
        if creds is None:
            return True
        auth = self.sim.authenticator
        if auth.check(creds, req.method, req.header("authorization")):
            return True
        headers = [("WWW-Authenticate", value) for value in auth.challenges(creds)]
        self.reply(req, 401, headers)
        return False

    # -------------------------------------------------------------- methods
    def _replay_window(self, req: RtspRequest, cam: CameraPath, target: Target) -> list[AccessUnit] | None:
        """The AUs of a replay request, or None after replying with an error."""
        if not cam.replay_enabled:
            self.reply(req, 503)
            return None
        if target.start is None or target.end is None or target.end <= target.start:
            self.reply(req, 457 if target.start is not None else 400)
            return None
        aus = self.sim.encoder_of(cam).footage_window(target.start.timestamp(), target.end.timestamp())
        if not aus:
            self.reply(req, 404)
            return None
        return aus

    def _base_url(self, req: RtspRequest) -> tuple[str, str]:
        """(url without query and trailing slash, query)."""
        url, _, query = req.url.partition("?")
        return url.rstrip("/"), query

    async def _describe(self, req: RtspRequest, cam: CameraPath, target: Target) -> None:
        if cam.mode is FaultMode.REFUSE:
            self.reply(req, 503)
            return
        enc = self.sim.encoder_of(cam)
        if not enc.ready:
            await wait_set(enc.first_keyframe, START_WAIT_S)  # a stream not started yet
            if self.closed:
                return
            if not enc.ready:
                self.reply(req, 503)
                return
        base, query = self._base_url(req)
        if target.track is not None:
            base = base.rsplit("/", 1)[0]
        suffix = f"?{query}" if query else ""
        control = f"{base}/trackID=1{suffix}"
        audio = None
        if enc.audio is not None and not target.replay:  # replay serves the video only
            spec = enc.audio.spec
            audio = SdpAudio(spec.payload_type, spec.encoding, SAMPLE_RATE, f"{base}/trackID=2{suffix}")
        if target.replay:
            aus = self._replay_window(req, cam, target)
            if aus is None:
                return
            duration = (aus[-1].ticks - aus[0].ticks) / RTP_CLOCK + 1 / enc.settings.fps
            range_line = f"a=range:npt=0-{duration:.3f}"
        else:
            range_line = "a=range:npt=0-"
        host = self.sim.advertised_host
        sdp = build_sdp(
            control=control,
            session_id=random.getrandbits(31),
            host=host,
            name=cam.name,
            range_line=range_line,
            codec=enc.codec,
            params=enc.params,
            audio=audio,
        )
        headers = [("Content-Type", "application/sdp"), ("Content-Base", base + "/")]
        self.reply(req, 200, headers, sdp.encode())

    def _setup(self, req: RtspRequest, cam: CameraPath, target: Target, sess: Session | None) -> None:
        spec = parse_transport(req.header("transport", "") or "")
        if spec is None:
            self.reply(req, 461)
            return
        if sess is None and req.session_id is not None:
            self.reply(req, 454)
            return
        if sess is None and cam.mode is FaultMode.REFUSE:
            self.reply(req, 503)
            return
        if target.replay:
            if self._replay_window(req, cam, target) is None:
                return
        enc = self.sim.encoder_of(cam)
        audio = (target.track or "").lower() == "trackid=2"
        if audio and (enc.audio is None or target.replay):
            self.reply(req, 404)
            return
        if sess is None:
            sess = Session(
                id=secrets.token_hex(8).upper(),
                camera=cam,
                conn=self,
                replay=target.replay,
                control_url=req.url,
                encoder=enc,
                start=target.start,
                end=target.end,
                ssrc=random.getrandbits(32) if target.replay else enc.ssrc,
            )
            self.sessions[sess.id] = sess
            if audio:
                sess.channel = -2  # no video channel until the video track is SETUP
        if not audio:
            sess.control_url = req.url
        if spec.interleaved is None:
            used = {c for s in self.sessions.values() for c in (s.channel, s.audio_channel) if c is not None}
            used.discard(sess.audio_channel if audio else sess.channel)
            channel = 0
            while channel in used:
                channel += 2
            spec_pair = (channel, channel + 1)
        else:
            spec_pair = spec.interleaved
        if audio:
            assert enc.audio is not None
            sess.audio_channel = spec_pair[0]
            ssrc = enc.audio.ssrc
        else:
            sess.channel = spec_pair[0]
            ssrc = sess.ssrc
        transport = f'RTP/AVP/TCP;unicast;interleaved={spec_pair[0]}-{spec_pair[1]};ssrc={ssrc:08X};mode="PLAY"'
        self.reply(req, 200, [("Transport", transport), *self._session_header(sess)])

    def _play(self, req: RtspRequest, sess: Session) -> None:
        headers = self._session_header(sess)
        if sess.channel < 0:
            self.reply(req, 455, headers)  # the audio track alone: the video track was never SETUP
            return
        if sess.replay:
            self._play_replay(req, sess, headers)
            return
        if sess.playing:
            self.reply(req, 200, [*headers, ("Range", "npt=0.000-")])
            return
        gop = list(sess.encoder.gop)
        if gop:
            first = gop[0]
            info = f"url={sess.control_url};seq={first.first_seq};rtptime={first.rtp_ts}"
            headers += [("Range", "npt=0.000-"), ("RTP-Info", info)]
        else:
            headers += [("Range", "npt=0.000-")]
        self.reply(req, 200, headers)
        ch, ach = sess.channel, sess.audio_channel
        if gop:
            first = gop[0]
            sr = rtcp_sender_report(sess.ssrc, first.wall, first.rtp_ts, 0, 0)
            self.send(interleave(ch + 1, sr))
            track = sess.encoder.audio
            if ach is not None and track is not None:
                samples = int(first.wall * SAMPLE_RATE)
                self.send(interleave(ach + 1, rtcp_sender_report(track.ssrc, first.wall, samples, 0, 0)))
            for au in gop:
                if au.packets is not None:
                    self.send(au.framed(ch, ach))
            sess.need_key = False
        else:
            sess.need_key = True
        sess.playing = True
        self.sim._playing.add(sess)

    def _play_replay(self, req: RtspRequest, sess: Session, headers: list[tuple[str, str]]) -> None:
        if sess.task is not None:
            self.reply(req, 200, headers)
            return
        target = Target(camera=sess.camera.name, replay=True, start=sess.start, end=sess.end)
        aus = self._replay_window(req, sess.camera, target)
        if aus is None:
            return
        first = aus[0]
        duration = (aus[-1].ticks - first.ticks) / RTP_CLOCK + 1 / sess.encoder.settings.fps
        info = f"url={sess.control_url};seq={sess._replay_seq};rtptime={first.rtp_ts}"
        clock = f"clock={format_hik_time(datetime.fromtimestamp(first.wall, UTC))}-"
        clock += format_hik_time(datetime.fromtimestamp(aus[-1].wall, UTC))
        headers += [("Range", f"npt=0.000-{duration:.3f}"), ("RTP-Info", info), ("x-Range-Clock", clock)]
        self.reply(req, 200, headers)
        sess.playing = True
        sess.task = asyncio.create_task(self._replay(sess, aus), name=f"fakecam-replay-{sess.id}")

    async def _replay(self, sess: Session, aus: list[AccessUnit]) -> None:
        loop = asyncio.get_running_loop()
        speed = max(0.01, self.sim.replay_speed)
        cam = sess.camera
        first = aus[0]
        ch = sess.channel
        packets = 0
        octets = 0
        self.send(interleave(ch + 1, rtcp_sender_report(sess.ssrc, first.wall, first.rtp_ts, 0, 0)))
        t0 = loop.time()
        try:
            for au in aus:
                due = t0 + (au.ticks - first.ticks) / RTP_CLOCK / speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not cam.unstalled.is_set():
                    paused_at = loop.time()
                    await cam.unstalled.wait()
                    t0 += loop.time() - paused_at
                if self.closed:
                    return
                pkts = packetize(au.nals, au.rtp_ts, sess._replay_seq, sess.ssrc, sess.encoder.codec)
                sess._replay_seq = (sess._replay_seq + len(pkts)) & 0xFFFF
                packets += len(pkts)
                octets += sum(len(p) - 12 for p in pkts)
                self.send(b"".join(interleave(ch, p) for p in pkts))
                await self.writer.drain()
            last = aus[-1]
            bye = rtcp_sender_report(sess.ssrc, last.wall, last.rtp_ts, packets, octets) + rtcp_bye(sess.ssrc)
            self.send(interleave(ch + 1, bye))
            await self.writer.drain()
            sess.finished = True
            logger.info("fakecam replay %s on %s done: %s frames", sess.id, cam.name, len(aus))
            self.close_later(REPLAY_LINGER_S, "replay finished")
        except (ConnectionError, OSError):
            self.abort("replay write failed")

    def _pause(self, req: RtspRequest, sess: Session) -> None:
        if sess.replay:
            self.reply(req, 501, self._session_header(sess))
            return
        sess.playing = False
        self.sim._playing.discard(sess)
        self.reply(req, 200, self._session_header(sess))

    async def _teardown(self, req: RtspRequest, sess: Session | None) -> None:
        if sess is None:
            self.reply(req, 454 if req.session_id else 200)
            return
        self.sim._playing.discard(sess)
        if sess.task is not None and not sess.task.done():
            sess.task.cancel()
        self.sessions.pop(sess.id, None)
        self.reply(req, 200, self._session_header(sess))
        if sess.replay or not self.sessions:
            self.close("teardown")


class FakeCamSim:
    """A simulated fleet of RTSP cameras sharing encoders.

    Live: ``rtsp://host:port/<name>`` (also ``/<name>/Streaming/Channels/101``).
    Replay: ``rtsp://host:port/<name>/Streaming/tracks/101?starttime=YYYYMMDDTHHMMSSZ&endtime=...``.

    Every camera without a :class:`StreamProfile` of its own sends the default stream: ``settings``/``source``
    (a live 640x360 H.264 test pattern with the UTC clock burnt in), or ``profile`` resolved against them
    (e.g. ``StreamProfile(looped=True)``: the pre-encoded 1080p 4 Mbit/s loop). Cameras with equal profiles
    share one encoder; an encoder starts when its first camera is added.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = None,
        *,
        cameras: list[str] | None = None,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        settings: EncoderSettings | None = None,
        source: VideoSource | None = None,
        replay_minutes: float = 15.0,
        replay_speed: float = 8.0,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER,
        advertised_host: str | None = None,
        profile: StreamProfile | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._requested_control_port = control_port
        self.base_settings = settings or EncoderSettings(width=width, height=height, fps=fps)
        self.base_source: VideoSource = source or TestPatternSource()
        self.cache_dir = cache_dir
        self.replay_seconds = replay_minutes * 60
        self.profile = profile
        self.started = False
        self.encoders: dict[tuple[EncoderSettings, VideoSource], SharedEncoder] = {}
        self._camera_encoders: dict[str, SharedEncoder] = {}
        self.encoder = self._encoder_for(profile)  # the default stream
        self.settings = self.encoder.settings
        self.replay_speed = replay_speed
        self.max_buffer_bytes = max_buffer_bytes
        self.advertised_host = advertised_host or (host if host not in ("", "0.0.0.0", "::") else "127.0.0.1")
        self.authenticator = Authenticator()
        self.cameras: dict[str, CameraPath] = {}
        self.port = 0
        self.control_port: int | None = None
        self.slow_clients_dropped = 0
        self._initial = list(cameras or [])
        self._server: asyncio.Server | None = None
        self._device_servers: dict[str, asyncio.Server] = {}
        self._control: Any = None
        self._conns: dict[str, set[Connection]] = {}
        self._all_conns: set[Connection] = set()
        self._playing: set[Session] = set()
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self.started = False

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        for name in self._initial:
            if name not in self.cameras:
                self.add_camera(name)
        await asyncio.gather(*(enc.start() for enc in list(self.encoders.values())))
        self._server = await asyncio.start_server(
            lambda r, w: self._accept(r, w, None), self.host, self._requested_port, limit=MAX_HEADER_BYTES
        )
        self.port = _bound_port(self._server)
        if self._requested_control_port is not None:
            from heldar.fakecam.control import ControlServer

            self._control = ControlServer(self, self.host, self._requested_control_port)
            self.control_port = await self._control.start()
        for cam in self.cameras.values():
            if cam.device_port is not None and cam.name not in self._device_servers:
                await self.add_device(cam.name, cam.device_port)
        self.started = True
        logger.info("fakecam listening on %s:%s (control %s)", self.host, self.port, self.control_port)

    async def stop(self) -> None:
        self.started = False
        if self._control is not None:
            await self._control.stop()
            self._control = None
        servers = [s for s in (self._server, *self._device_servers.values()) if s is not None]
        for srv in servers:
            srv.close()
        for conn in list(self._all_conns):
            conn.abort("simulator stopping")
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.gather(*self._conn_tasks, return_exceptions=True)
        for srv in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 2)
        self._server = None
        self._device_servers.clear()
        for enc in self.encoders.values():
            enc.subscribers.clear()
            await enc.stop()

    async def __aenter__(self) -> FakeCamSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device_camera: str | None
    ) -> None:
        conn = Connection(self, reader, writer, device_camera)
        self._all_conns.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        try:
            await conn.serve()
        finally:
            if task is not None:
                self._conn_tasks.discard(task)

    # -------------------------------------------------------------- streams
    def _resolve(self, profile: StreamProfile | None) -> tuple[EncoderSettings, VideoSource]:
        if profile is None:
            return self.base_settings, self.base_source
        source = LoopedFileSource(cache_dir=self.cache_dir) if profile.looped else self.base_source
        return profile.settings(self.base_settings), source

    def _encoder_for(self, profile: StreamProfile | None) -> SharedEncoder:
        """The shared encoder of a profile (``None``: the simulator's default), created on first use."""
        key = self._resolve(profile)
        enc = self.encoders.get(key)
        if enc is None:
            enc = SharedEncoder(key[0], key[1], replay_seconds=self.replay_seconds)
            enc.subscribers.append(lambda au, enc=enc: self._on_au(enc, au))
            self.encoders[key] = enc
            if self.started:
                enc.launch()
        return enc

    def encoder_of(self, cam: CameraPath) -> SharedEncoder:
        return self._camera_encoders.get(cam.name, self.encoder)

    async def wait_ready(self, name: str, timeout_s: float | None = None) -> None:
        """Wait until camera ``name``'s stream serves (a looped clip may need encoding first); RuntimeError when
        it cannot (see :meth:`SharedEncoder.wait_serving`)."""
        await self.encoder_of(self.camera(name)).wait_serving(timeout_s)

    # -------------------------------------------------------------- fan-out
    def _on_au(self, enc: SharedEncoder, au: AccessUnit) -> None:
        limit = self.max_buffer_bytes
        if enc.settings.bitrate_kbps:  # 2 MB is 30 s of the 0.55 Mbit/s default but only 4 s at 4 Mbit/s
            limit = max(limit, int(enc.settings.bitrate_kbps * 125 * SLOW_CLIENT_SECONDS))
        for sess in list(self._playing):
            if sess.encoder is not enc:
                continue
            cam = sess.camera
            if not cam.unstalled.is_set():
                sess.need_key = True
                continue
            if sess.need_key:
                if not au.key:
                    continue
                sess.need_key = False
            conn = sess.conn
            if conn.closed or conn.transport.is_closing():
                self._playing.discard(sess)
                continue
            conn.transport.write(au.framed(sess.channel, sess.audio_channel))
            if conn.transport.get_write_buffer_size() > limit:
                self.slow_clients_dropped += 1
                logger.warning("fakecam dropping slow client %s on %s", conn.peer, cam.name)
                conn.abort("client too slow")

    # -------------------------------------------------------------- cameras
    def add_camera(
        self,
        name: str,
        username: str | None = None,
        password: str | None = None,
        *,
        auth: AuthScheme = "any",
        replay_enabled: bool = True,
        device_port: int | None = None,
        profile: StreamProfile | None = None,
    ) -> CameraPath:
        """Add a camera at ``/<name>``; ``profile``: its own stream (codec, G.711 audio, looped 1080p clip),
        else the simulator's default stream."""
        if not name or "/" in name or "?" in name or name.lower() == "streaming":
            raise ValueError(f"invalid camera name {name!r}")
        if name in self.cameras:
            raise ValueError(f"camera {name!r} exists")
        cam = CameraPath.create(name, username, password, auth=auth, replay_enabled=replay_enabled)
        cam.device_port = device_port
        cam.profile = profile
        if profile is not None:
            self._camera_encoders[name] = self._encoder_for(profile)
        self.cameras[name] = cam
        return cam

    async def add_device(self, name: str, port: int = 0) -> int:
        """Serve camera ``name`` alone on its own port with Hikvision paths
        (``/Streaming/Channels/101`` live, ``/Streaming/tracks/101?starttime=..`` replay)."""
        cam = self.camera(name)
        if name in self._device_servers:
            return cam.device_port or 0
        srv = await asyncio.start_server(lambda r, w: self._accept(r, w, name), self.host, port, limit=MAX_HEADER_BYTES)
        self._device_servers[name] = srv
        cam.device_port = _bound_port(srv)
        return cam.device_port

    def remove_camera(self, name: str) -> None:
        cam = self.camera(name)
        cam.unstalled.set()  # release handlers parked on a stalled camera
        for conn in list(self._conns.get(name, ())):
            conn.abort(f"camera {name} removed")
        self.cameras.pop(name, None)
        self._camera_encoders.pop(name, None)
        srv = self._device_servers.pop(name, None)
        if srv is not None:
            srv.close()

    def camera(self, name: str) -> CameraPath:
        try:
            return self.cameras[name]
        except KeyError:
            raise KeyError(f"unknown camera {name!r}") from None

    def set_fault(self, name: str, mode: str | FaultMode) -> FaultMode:
        """Apply a fault action (see :class:`FaultMode`); returns the camera's new mode."""
        cam = self.camera(name)
        action = FaultMode(mode)
        new = cam.apply(action)
        if action in (FaultMode.DROP, FaultMode.DOWN):
            for conn in list(self._conns.get(name, ())):
                conn.abort(f"fault {action} on {name}")
        return new

    def set_replay_enabled(self, name: str, enabled: bool) -> None:
        self.camera(name).replay_enabled = enabled

    def truth(self, name: str) -> list[tuple[datetime, datetime | None]]:
        """UTC intervals when ``name`` was serving media (end None: still serving)."""
        return self.camera(name).truth_intervals()

    def fault_log(self, name: str) -> list[FaultEvent]:
        return list(self.camera(name).log)

    def session_count(self, name: str | None = None) -> int:
        return sum(1 for s in self._playing if name is None or s.camera.name == name)

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for sess in self._playing:
            counts[sess.camera.name] = counts.get(sess.camera.name, 0) + 1
        span = self.encoder.footage_span
        return {
            "port": self.port,
            "control_port": self.control_port,
            "frames": self.encoder.frames,
            "encoder_restarts": self.encoder.restarts,
            "slow_clients_dropped": self.slow_clients_dropped,
            "footage": None
            if span is None
            else {"start": _iso(span[0]), "end": _iso(span[1]), "seconds": round(span[1] - span[0], 3)},
            "cameras": [
                {
                    **cam.describe(),
                    "stream": self.stream_of(cam),
                    "sessions": counts.get(cam.name, 0),
                    "url": self.url(cam.name, False),
                }
                for cam in self.cameras.values()
            ],
            "streams": [self._describe_encoder(enc) for enc in self.encoders.values()],
        }

    def stream_of(self, cam: CameraPath) -> dict[str, Any]:
        """What camera ``cam`` sends: codec, size, fps, GOP, bitrate target, audio, looped or live."""
        s = self.encoder_of(cam).settings
        return {"codec": s.codec, "width": s.width, "height": s.height, "fps": s.fps, "gop_seconds": s.gop_seconds,
                "bitrate_kbps": s.bitrate_kbps, "audio": s.audio, "looped": self.encoder_of(cam).looped}  # fmt: skip

    def _describe_encoder(self, enc: SharedEncoder) -> dict[str, Any]:
        s = enc.settings
        return {"codec": s.codec, "width": s.width, "height": s.height, "fps": s.fps, "audio": s.audio,
                "looped": enc.looped, "frames": enc.frames, "restarts": enc.restarts,
                "serving": enc.first_keyframe.is_set()}  # fmt: skip

    # -------------------------------------------------------------- URLs
    def _netloc(self, name: str, with_credentials: bool, port: int | None = None) -> str:
        cam = self.camera(name)
        userinfo = ""
        if with_credentials and cam.credentials is not None:
            userinfo = f"{quote(cam.credentials.username, safe='')}:{quote(cam.credentials.password, safe='')}@"
        return f"{userinfo}{self.advertised_host}:{port or self.port}"

    def url(self, name: str, with_credentials: bool = True) -> str:
        return f"rtsp://{self._netloc(name, with_credentials)}/{quote(name)}"

    def replay_url(self, name: str, start: datetime, end: datetime, with_credentials: bool = True) -> str:
        return self.replay_url_template(name, with_credentials).format(
            start=format_hik_time(start), end=format_hik_time(end)
        )

    def replay_url_template(self, name: str, with_credentials: bool = True) -> str:
        """Replay URL with ``{start}``/``{end}`` placeholders (``YYYYMMDDTHHMMSSZ``, UTC)."""
        base = f"rtsp://{self._netloc(name, with_credentials)}/{quote(name)}"
        return base + "/Streaming/tracks/101?starttime={start}&endtime={end}"

    def device_url(self, name: str, with_credentials: bool = True, replay: bool = False) -> str:
        cam = self.camera(name)
        if cam.device_port is None or name not in self._device_servers:
            raise KeyError(f"camera {name!r} has no device port")
        base = f"rtsp://{self._netloc(name, with_credentials, cam.device_port)}"
        if replay:
            return base + "/Streaming/tracks/101?starttime={start}&endtime={end}"
        return base + "/Streaming/Channels/101"


def _bound_port(server: asyncio.Server) -> int:
    for sock in server.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(sock.getsockname()[1])
    raise RuntimeError("server has no TCP socket")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
