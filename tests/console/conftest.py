"""One real heldar for the console tests: PostgreSQL, Ray with a supervisor recording simulated cameras, the API
(auth on, live view on) served by uvicorn, and a headless Debian chromium driven by Playwright.

Cameras: ``con-steady`` records throughout, ``con-flap`` drops and resumes once (a gap with a cause),
``con-broken`` points at a path the simulator does not serve (the recorder stops in ``error``).
Screenshots go to ``tests/console/artifacts/`` (ignored by git; CI may keep them).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from api.supervisor_link import SupervisorLink
from heldar.fakecam import FakeCamSimThread
from tests.integration.recorder_env import add_camera, db, recorder_env, wait_for
from tests.integration.test_auth_api import ADMIN_PASSWORD, ADMIN_USER, settings_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
STEADY, FLAP, BROKEN = "con-steady", "con-flap", "con-broken"
SEGMENT_S = 2
SCOPED_CAPABILITIES = ["camera:read", "video:live", "video:playback", "video:export"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def sim() -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread() as s:
        yield s


@pytest.fixture(scope="package")
def stack(new_database, ray_session: str, sim: FakeCamSimThread, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The running kernel: ``{"base", "url", "env", "admin", "keys": {"viewer", "scoped"}}``."""
    url = new_database()
    data_dir = tmp_path_factory.mktemp("console")
    namespace = f"{ray_session}-console"
    envs = recorder_env(url, namespace, data_dir, live_view_enabled=True)
    env = next(envs)
    for camera in (STEADY, FLAP):
        sim.add_camera(camera)
        add_camera(env, camera, sim.url(camera), segment_seconds=SEGMENT_S)
    add_camera(env, BROKEN, f"rtsp://{sim.host}:{sim.port}/not-served-here", segment_seconds=SEGMENT_S)

    settings = settings_for(data_dir, ray_namespace=namespace, live_view_enabled=True, webhooks_enabled=False)
    asyncio.run(bootstrap_admin(settings, url))
    port = _free_port()
    app = create_app(settings, url, supervisor=SupervisorLink(namespace))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the API did not start"
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        client.cookies.clear()
        keys: dict[str, str] = {}
        for name, body in (
            ("viewer", {"name": "console-viewer", "role": "viewer"}),
            (
                "scoped",
                {
                    "name": "console-scoped",
                    "role": "viewer",
                    "capabilities": SCOPED_CAPABILITIES,
                    "scope_kind": "cameras",
                    "scope_cameras": [STEADY],
                },
            ),
        ):
            minted = client.post("/api/v1/api-keys", json=body, headers=admin)
            assert minted.status_code == 201, minted.text
            keys[name] = minted.json()["key"]
    wait_for(lambda: len(segments(env, STEADY)) >= 2 and len(segments(env, FLAP)) >= 2, 150, "both cameras to record")
    ARTIFACTS.mkdir(exist_ok=True)
    yield {"base": base, "url": url, "env": env, "admin": admin, "keys": keys, "sim": sim}
    server.should_exit = True
    thread.join(20)
    next(envs, None)  # the supervisor stops its cameras


def segments(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM segments WHERE camera_id = $1 ORDER BY start_time", camera_id)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield b
        b.close()


class Console:
    """A page of the console in a fresh browser context, recording what the browser complained about."""

    def __init__(self, browser: Any, base: str, name: str, *, mobile: bool = False) -> None:
        size = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900}
        self.context = browser.new_context(viewport=size, base_url=base)
        self.page = self.context.new_page()
        self.name = name
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.failed: list[str] = []  # requests the server refused, for the failure messages
        self.page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def open(self, hash_: str = "") -> Any:
        self.page.goto("/console" + hash_)
        return self.page

    def login_password(self, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
        page = self.open()
        page.fill("#username", user)
        page.fill("#password", password)
        page.click("#login-submit")
        page.wait_for_selector("#view-fleet:not([hidden]) .camera")

    def login_key(self, key: str) -> None:
        page = self.open()
        page.check("input[name=mode][value=key]")
        page.fill("#api-key", key)
        page.click("#login-submit")
        page.wait_for_selector("#view-fleet:not([hidden]) .camera")

    def shot(self, what: str) -> Path:
        path = ARTIFACTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        return [p for p in self.problems if "Content Security Policy" in p or "Content-Security-Policy" in p]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def console(browser: Any, stack: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    opened: list[Console] = []

    def make(name: str | None = None, **kwargs: Any) -> Console:
        c = Console(browser, stack["base"], name or request.node.name, **kwargs)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()
