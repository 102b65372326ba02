"""Secrets at rest (security F7, F21) with real PostgreSQL, ffmpeg, Ray and the RTSP simulator: with
``HELDAR_SECRET_KEY`` no camera password, webhook secret or frame-ticket key is readable in any table, every
feature still works (stream test, recording through Ray, signed webhooks), clear values are sealed in place at
start, a rotation re-seals everything; without a key the start warns."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from heldar.fakecam import FakeCamSimThread
from heldar.secrets import sealing
from heldar.secrets.sealing import Sealer, derive_key, key_id
from heldar.store import perception as perception_store
from heldar.store.database import create_pool
from heldar.webhooks.signing import verify
from tests.conftest import TEST_SECRET_KEY
from tests.integration.sql import sql
from tests.integration.test_auth_api import bearer, login, settings_for, start
from tests.integration.test_webhooks_api import Receiver, wait_for, write_event

pytestmark = pytest.mark.integration

CAM_PASSWORD = "Cam-Pa$$w0rd-9f3a"
HOOK_SECRET = "whsec-sealed-4d1c77"
KEY_B = "b" * 64
KEY_C = "another-secret-key-that-is-long-enough"


@pytest.fixture(autouse=True)
def _forget_key() -> Iterator[None]:
    yield
    sealing.reset()  # later tests in this process read the environment again


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread() as s:
        s.add_camera("locked", "admin", CAM_PASSWORD, auth="digest")
        yield s


def dump_database(url: str) -> bytes:
    """Every row of every table of the public schema, as text (what a pg_dump would show)."""
    tables = [r["t"] for r in sql(url, "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")]
    out = []
    for table in tables:
        for row in sql(url, f'SELECT to_jsonb(x)::text AS j FROM "{table}" x'):
            out.append(row["j"])
    return "\n".join(out).encode()


def ticket_key(url: str) -> bytes:
    async def run() -> bytes:
        pool = await create_pool(url, max_size=1)
        try:
            return await perception_store.frame_ticket_secret(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def add_things(client: Any, admin: str, sim: FakeCamSimThread, rx: Receiver) -> tuple[str, str]:
    cam = {"id": "locked", "name": "locked", "main_stream_url": sim.url("locked", with_credentials=False),
           "username": "admin", "password": CAM_PASSWORD}  # fmt: skip
    r = client.post("/api/v1/cameras", json=cam, headers=bearer(admin))
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/webhooks", json={"name": "h", "url": rx.url("/sealed"), "secret": HOOK_SECRET},
                    headers=bearer(admin))  # fmt: skip
    assert r.status_code == 201, r.text
    return "locked", r.json()["id"]


def assert_nothing_in_clear(url: str, ticket: bytes) -> None:
    dump = dump_database(url)
    assert CAM_PASSWORD.encode() not in dump
    assert HOOK_SECRET.encode() not in dump
    assert ticket.hex().encode() not in dump  # bytea shows as \\x<hex> in to_jsonb
    assert sql(url, "SELECT password FROM cameras")[0]["password"].startswith("enc:v1:")
    assert sql(url, "SELECT secret FROM webhook_subscriptions")[0]["secret"].startswith("enc:v1:")
    assert bytes(sql(url, "SELECT value FROM perception_secrets")[0]["value"]).startswith(b"enc:v1:")


def kids(url: str) -> set[str]:
    values = [r["password"] for r in sql(url, "SELECT password FROM cameras WHERE password IS NOT NULL")]
    values += [r["secret"] for r in sql(url, "SELECT secret FROM webhook_subscriptions WHERE secret IS NOT NULL")]
    values += [bytes(r["value"]).decode("latin-1") for r in sql(url, "SELECT value FROM perception_secrets")]
    return {v.split(":")[2] if v.startswith("enc:v1:") else "clear" for v in values}


def stream_test_ok(client: Any, admin: str) -> None:
    r = client.post("/api/v1/cameras/locked/test", headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert r.json()["reachable"] is True, r.json()
    assert CAM_PASSWORD not in r.text


def webhook_signed_ok(url: str, rx: Receiver) -> None:
    before = len(rx.on("/sealed"))
    write_event(url, "camera_offline", camera_id="locked")
    wait_for(lambda: len(rx.on("/sealed")) > before)
    req = rx.on("/sealed")[-1]
    assert verify(HOOK_SECRET, req["body"], req["headers"]["X-Heldar-Signature"])


def test_sealed_everywhere_and_every_feature_still_works(new_database, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    rx = Receiver()
    settings = settings_for(tmp_path, secret_key=TEST_SECRET_KEY, webhook_allow_private=True, webhook_interval_s=0.2)
    try:
        with start(url, settings) as client:
            admin = login(client)
            add_things(client, admin, sim, rx)
            ticket = ticket_key(url)
            assert_nothing_in_clear(url, ticket)
            stream_test_ok(client, admin)
            webhook_signed_ok(url, rx)
            assert ticket_key(url) == ticket  # the same key opens every time
            view = client.get("/api/v1/cameras/locked", headers=bearer(admin)).json()
            assert view["has_password"] is True and "enc:v1" not in str(view) and CAM_PASSWORD not in str(view)
    finally:
        rx.close()


def test_clear_values_are_sealed_in_place_and_a_rotation_reseals_everything(
    new_database, sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    rx = Receiver()
    common = {"webhook_allow_private": True, "webhook_interval_s": 0.2}
    try:
        # 1. no key: stored in clear, and the start says so
        with caplog.at_level(logging.WARNING), start(url, settings_for(tmp_path, secret_key=None, **common)) as c:
            admin = login(c)
            add_things(c, admin, sim, rx)
            ticket = ticket_key(url)
        assert any("HELDAR_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)
        assert sql(url, "SELECT password FROM cameras")[0]["password"] == CAM_PASSWORD
        assert kids(url) == {"clear"}
        # 2. a key appears: everything is sealed in place at start, and still works
        with start(url, settings_for(tmp_path, secret_key=TEST_SECRET_KEY, **common)) as c:
            admin = login(c)
            assert kids(url) == {key_id(derive_key(TEST_SECRET_KEY))}
            assert_nothing_in_clear(url, ticket)
            assert ticket_key(url) == ticket
            stream_test_ok(c, admin)
            webhook_signed_ok(url, rx)
        # 3. rotation: the new key with the old one as previous re-seals every value under the new key
        rotated = settings_for(tmp_path, secret_key=KEY_B, secret_key_previous=TEST_SECRET_KEY, **common)
        with start(url, rotated) as c:
            assert kids(url) == {key_id(derive_key(KEY_B))}
        # 4. the old key can go: the new one alone opens everything
        with start(url, settings_for(tmp_path, secret_key=KEY_B, **common)) as c:
            admin = login(c)
            assert ticket_key(url) == ticket
            stream_test_ok(c, admin)
            webhook_signed_ok(url, rx)
            assert_nothing_in_clear(url, ticket)
        # 5. a wrong key never destroys what it cannot open: an error, the values stay as they were
        caplog.clear()
        with caplog.at_level(logging.ERROR), start(url, settings_for(tmp_path, secret_key=KEY_C, **common)):
            pass
        assert any("HELDAR_SECRET_KEY_PREVIOUS" in r.getMessage() for r in caplog.records)
        assert kids(url) == {key_id(derive_key(KEY_B))}
        assert Sealer.from_strings(KEY_B).open(sql(url, "SELECT password FROM cameras")[0]["password"],
                                               "camera-password") == CAM_PASSWORD.encode()  # fmt: skip
        assert not any(CAM_PASSWORD in r.getMessage() or HOOK_SECRET in r.getMessage() for r in caplog.records)
    finally:
        rx.close()


def test_a_camera_with_a_sealed_password_records_through_ray(
    new_database, ray_session: str, sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The supervisor and camera actor get the camera with its password sealed; the actor opens it (with the
    node's HELDAR_SECRET_KEY) only to build ffmpeg's URL, and records from a digest-auth camera."""
    import ray

    from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
    from heldar.store import cameras as camera_store
    from tests.integration.recorder_env import db, recorder_env
    from tests.integration.recorder_env import wait_for as wait_until

    url = new_database()
    sealing.configure(TEST_SECRET_KEY)
    gen = recorder_env(url, f"{ray_session}-sealed", tmp_path)
    env = next(gen)
    try:
        body = CameraCreate(id="locked", name="locked", main_stream_url=sim.url("locked", with_credentials=False),
                            username="admin", password=CAM_PASSWORD, segment_seconds=2)  # fmt: skip
        camera = Camera.from_create(body, RecordingDefaults())

        async def insert() -> None:
            pool = await create_pool(url, max_size=1)
            try:
                await camera_store.insert_camera(pool, camera)
            finally:
                await pool.close()

        asyncio.run(insert())
        assert db(env, "SELECT password FROM cameras")[0]["password"].startswith("enc:v1:")
        ray.get(env["supervisor"].reconcile.remote("locked"))
        wait_until(lambda: len(db(env, "SELECT 1 FROM segments WHERE camera_id = 'locked'")) >= 2, 60, "segments")
        status = db(env, "SELECT * FROM camera_status WHERE camera_id = 'locked'")[0]
        assert status["state"] == "recording", status
        assert CAM_PASSWORD not in str(status)
        # secrets in transit: the recorder's ffmpeg inherits no HELDAR_* variable (its Ray worker has
        # HELDAR_SECRET_KEY), and the actors got the database URL as a file only this user reads
        folder = str(tmp_path / "recordings" / "locked")
        ffmpegs = [p for p in psutil.process_iter(["cmdline"]) if any(folder in a for a in p.info["cmdline"] or [])]
        assert ffmpegs, "the recorder's ffmpeg"
        for proc in ffmpegs:
            environ = proc.environ()
            assert environ.get("TZ") == "UTC" and not [k for k in environ if k.startswith("HELDAR_")], environ
        (ref,) = (tmp_path / ".secrets").iterdir()
        assert stat.S_IMODE(ref.stat().st_mode) == 0o600 and ref.read_text() == url
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
