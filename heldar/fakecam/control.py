"""A tiny HTTP/1.1 control API for the simulator (plain asyncio, JSON in and out).

``GET /cameras``, ``POST /cameras`` ``{"name", "username"?, "password"?, "auth"?, "replay_enabled"?}`` plus the
camera's own stream, any of ``{"codec": "h264|h265", "audio": "pcm_alaw|pcm_mulaw", "looped": bool, "width",
"height", "fps", "bitrate_kbps", "gop_seconds"}`` (see :class:`heldar.fakecam.source.StreamProfile`),
``DELETE /cameras/<name>``, ``POST /cameras/<name>/fault`` ``{"mode": "drop|down|stall|refuse|resume"}``,
``POST /cameras/<name>/replay`` ``{"enabled": bool}``, ``GET /cameras/<name>/truth``, ``GET /status``.
Errors are ``{"error": "..."}`` with the matching status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from heldar.fakecam.faults import FaultMode, rfc3339
from heldar.fakecam.source import StreamProfile

if TYPE_CHECKING:
    from heldar.fakecam.server import FakeCamSim

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ControlServer:
    def __init__(self, sim: FakeCamSim, host: str, port: int) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                keep_alive = await self._one(head, reader, writer)
                await writer.drain()
                if not keep_alive:
                    return
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _one(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            self._write(writer, 400, {"error": "bad request line"}, False)
            return False
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        try:
            length = int(headers.get("content-length", "0"))
            if length < 0 or length > MAX_BODY:
                raise HttpError(413, "body too large")
            body = await reader.readexactly(length) if length else b""
            status, payload = self._route(method.upper(), target, body)
        except HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
        except asyncio.IncompleteReadError:
            return False
        except Exception as exc:
            logger.exception("fakecam control request failed")
            status, payload = 500, {"error": str(exc)}
        self._write(writer, status, payload, keep_alive)
        return keep_alive

    def _write(self, writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        writer.write(head.encode() + body)

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data

    def _route(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        path = unquote(urlsplit(target).path).rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        sim = self.sim
        if parts == ["status"] or parts == []:
            _allow(method, "GET")
            return 200, sim.status()
        if parts == ["cameras"]:
            if method == "GET":
                return 200, {"cameras": sim.status()["cameras"]}
            _allow(method, "POST")
            data = self._json(body)
            name = data.get("name")
            if not isinstance(name, str) or not name:
                raise HttpError(400, "name is required")
            if name in sim.cameras:
                raise HttpError(409, f"camera {name!r} exists")
            auth = data.get("auth", "any")
            if auth not in ("any", "basic", "digest"):
                raise HttpError(400, "auth must be any, basic or digest")
            username, password = data.get("username"), data.get("password")
            if username is not None and not isinstance(username, str):
                raise HttpError(400, "username must be a string")
            if password is not None and not isinstance(password, str):
                raise HttpError(400, "password must be a string")
            try:
                profile = StreamProfile.from_options(data)
                cam = sim.add_camera(
                    name, username, password, auth=auth, replay_enabled=bool(data.get("replay_enabled", True)),
                    profile=profile,
                )  # fmt: skip
            except (TypeError, ValueError) as exc:
                raise HttpError(400, str(exc)) from None
            return 201, {**cam.describe(), "stream": sim.stream_of(cam), "url": sim.url(name),
                         "replay_url": sim.replay_url_template(name)}  # fmt: skip
        if len(parts) >= 2 and parts[0] == "cameras":
            name = parts[1]
            if name not in sim.cameras:
                raise HttpError(404, f"unknown camera {name!r}")
            cam = sim.cameras[name]
            rest = parts[2:]
            if not rest:
                if method == "DELETE":
                    sim.remove_camera(name)
                    return 200, {"deleted": name}
                _allow(method, "GET")
                return 200, next(c for c in sim.status()["cameras"] if c["name"] == name)
            if rest == ["fault"]:
                _allow(method, "POST")
                mode = self._json(body).get("mode")
                try:
                    action = FaultMode(mode)
                    if action is FaultMode.NORMAL:
                        raise ValueError
                except ValueError:
                    raise HttpError(400, "mode must be one of drop, down, stall, refuse, resume") from None
                new = sim.set_fault(name, action)
                return 200, {"name": name, "applied": str(action), "mode": str(new)}
            if rest == ["replay"]:
                _allow(method, "POST")
                enabled = self._json(body).get("enabled")
                if not isinstance(enabled, bool):
                    raise HttpError(400, "enabled must be a boolean")
                sim.set_replay_enabled(name, enabled)
                return 200, cam.describe()
            if rest == ["truth"]:
                _allow(method, "GET")
                return 200, {
                    "name": name,
                    "mode": str(cam.mode),
                    "serving": [{"start": rfc3339(s), "end": rfc3339(e)} for s, e in cam.truth_intervals()],
                    "faults": [
                        {"at": rfc3339(ev.at), "mode": str(ev.mode), "previous": str(ev.previous)} for ev in cam.log
                    ],
                }
        raise HttpError(404, f"no route for {path}")


def _allow(method: str, expected: str) -> None:
    if method != expected:
        raise HttpError(405, f"method {method} not allowed")
