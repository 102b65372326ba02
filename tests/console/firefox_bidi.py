"""A very small WebDriver BiDi client for Debian's headless Firefox (no geckodriver: Firefox speaks BiDi itself
on ``--remote-debugging-port``). Enough to navigate, evaluate expressions and take a screenshot.

Runs its own asyncio loop in a thread, so the sync tests (and Playwright's loop) are not disturbed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


class BidiError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Firefox:
    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        assert FIREFOX is not None, "no firefox"
        profile.mkdir(parents=True, exist_ok=True)
        # autoplay of muted video is allowed by default; no first-run pages, no telemetry
        (profile / "user.js").write_text(
            'user_pref("browser.shell.checkDefaultBrowser", false);\n'
            'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n'
            'user_pref("media.autoplay.default", 0);\n'
        )
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", str(profile), f"--remote-debugging-port={self.port}",
             f"--width={width}", f"--height={height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._call(self._connect())
        self.call("session.new", {"capabilities": {}})
        self.context = self.call("browsingContext.getTree", {})["contexts"][0]["context"]

    def _call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        self.http = aiohttp.ClientSession()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.ws = await self.http.ws_connect(f"ws://127.0.0.1:{self.port}/session", max_msg_size=64 << 20)
                break
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                await asyncio.sleep(0.2)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)

    async def _send(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting[self._next] = future
        await self.ws.send_str(json.dumps({"id": self._next, "method": method, "params": params}))
        data = await future
        if data.get("type") == "error":
            raise BidiError(f"{method}: {data.get('error')}: {data.get('message')}")
        return data["result"]

    def call(self, method: str, params: dict[str, Any], timeout: float = 60) -> Any:
        return self._call(self._send(method, params), timeout)

    def goto(self, url: str) -> None:
        self.call("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def js(self, expression: str) -> Any:
        """The value of ``expression`` (awaited when a promise), as JSON: use JSON.stringify for objects."""
        result = self.call(
            "script.evaluate",
            {"expression": expression, "target": {"context": self.context}, "awaitPromise": True},
        )
        if result.get("type") == "exception":
            raise BidiError(result["exceptionDetails"].get("text", "exception"))
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"firefox: timed out after {timeout}s waiting for {expression}")
            time.sleep(0.2)

    def click(self, x: float, y: float) -> None:
        """A real mouse click at viewport coordinates (CSS pixels)."""
        pointer = [{"type": "pointerMove", "x": round(x), "y": round(y)},
                   {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]  # fmt: skip
        self.call(
            "input.performActions",
            {"context": self.context, "actions": [{"type": "pointer", "id": "mouse",
                                                   "parameters": {"pointerType": "mouse"}, "actions": pointer}]},
        )  # fmt: skip

    def screenshot(self, path: Path) -> None:
        data = self.call("browsingContext.captureScreenshot", {"context": self.context})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("session.end", {}, timeout=10)
        except Exception:
            pass
        try:
            self._call(self.ws.close(), timeout=10)
            self._call(self.http.close(), timeout=10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
