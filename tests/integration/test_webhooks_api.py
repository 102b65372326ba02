"""Webhooks end to end with a real receiver on loopback (allowed by the test's setting): signed deliveries,
a retry after a 500, no redirects, give-up after the capped attempts, the ledger, the test delivery, CRUD,
roles and the SSRF guard."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from heldar.store.database import connect
from heldar.store.events import insert_event
from heldar.webhooks.signing import verify
from tests.integration.test_auth_api import audit_rows, bearer, login, mint, settings_for, start

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789"


class Receiver:
    """A loopback HTTP server: ``/flaky`` answers 500 once then 200, ``/redirect`` answers 302, ``/down`` 503,
    ``/slow`` 200 after ``slow_s``; it remembers what it got and when (``at``, monotonic)."""

    def __init__(self, slow_s: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "at": time.monotonic()})  # fmt: skip
                    flaky_calls = sum(1 for r in receiver.requests if r["path"] == "/flaky")
                if self.path == "/slow":
                    time.sleep(slow_s)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/landed")
                elif self.path == "/down":
                    self.send_response(503)
                elif self.path == "/flaky" and flaky_calls == 1:
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def write_event(url: str, event_type: str, **kw: Any) -> str:
    async def run() -> str:
        conn = await connect(url)
        try:
            return await insert_event(conn, event_type, **kw)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    receiver = Receiver()
    settings = settings_for(
        tmp_path_factory.mktemp("webhooks"), webhook_allow_private=True, webhook_interval_s=0.2,
        webhook_retry_base_s=0.2, webhook_retry_max_s=0.5, webhook_max_attempts=3, webhook_timeout_s=5,
    )  # fmt: skip
    with start(url, settings) as client:
        admin = login(client)
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "manager")}  # fmt: skip
        yield {"url": url, "client": client, "admin": admin, "keys": keys, "rx": receiver}
    receiver.close()


def call(env: dict[str, Any], method: str, path: str, role: str = "manager", **kw: Any) -> Any:
    return env["client"].request(method, path, headers={"X-API-Key": env["keys"][role]}, **kw)


def deliveries(env: dict[str, Any], hook_id: str) -> list[dict[str, Any]]:
    return list(call(env, "GET", f"/api/v1/webhooks/{hook_id}/deliveries", role="viewer").json())


def test_signed_delivery_with_a_retry_after_500(env) -> None:  # type: ignore[no-untyped-def]
    rx = env["rx"]
    write_event(env["url"], "camera_offline", camera_id="cam-x")  # before the subscription: never delivered
    r = call(env, "POST", "/api/v1/webhooks", json={"name": "flaky", "url": rx.url("/flaky"), "secret": SECRET,
                                                     "event_types": ["camera_*", "zone_*"]})  # fmt: skip
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["has_secret"] is True and "secret" not in hook and hook["event_types"] == ["camera_*", "zone_*"]
    write_event(env["url"], "recording_gap", camera_id="cam-x")  # filtered out by type
    event_id = write_event(env["url"], "camera_offline", camera_id="cam-x", severity="warning",
                           payload={"cause": "timeout"})  # fmt: skip
    wait_for(lambda: len(rx.on("/flaky")) >= 2)
    first, second = rx.on("/flaky")[:2]
    assert first["body"] == second["body"]  # the same bytes again
    for req in (first, second):
        assert verify(SECRET, req["body"], req["headers"]["X-Heldar-Signature"])
        assert req["headers"]["X-Heldar-Event"] == "camera_offline"
        assert req["headers"]["X-Heldar-Delivery"].startswith("whd_")
    assert first["headers"]["X-Heldar-Delivery"] != second["headers"]["X-Heldar-Delivery"]
    doc = json.loads(second["body"])
    assert doc["id"] == event_id and doc["camera_id"] == "cam-x" and doc["payload"] == {"cause": "timeout"}
    wait_for(lambda: len(deliveries(env, hook["id"])) >= 2)
    ledger = deliveries(env, hook["id"])
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in ledger] == [(2, True, 200), (1, False, 500)]
    time.sleep(0.6)
    assert len(rx.on("/flaky")) == 2  # nothing else matched, nothing sent twice after success
    state = call(env, "GET", f"/api/v1/webhooks/{hook['id']}", role="viewer").json()
    assert state["attempts"] == 0 and state["last_error"] is None


def test_redirects_are_not_followed_and_retries_are_capped(env) -> None:  # type: ignore[no-untyped-def]
    rx = env["rx"]
    hook = call(env, "POST", "/api/v1/webhooks", json={"name": "redir", "url": rx.url("/redirect"),
                                                       "min_severity": "critical"}).json()  # fmt: skip
    write_event(env["url"], "recorder_error", camera_id="cam-y", severity="warning")  # below the floor
    write_event(env["url"], "recorder_error", camera_id="cam-y", severity="critical")
    wait_for(lambda: len(deliveries(env, hook["id"])) >= 3)
    ledger = deliveries(env, hook["id"])
    assert [(d["attempt"], d["status_code"], d["gave_up"]) for d in ledger] == [(3, 302, True), (2, 302, False),
                                                                                (1, 302, False)]  # fmt: skip
    assert "redirects are not followed" in ledger[0]["error"]
    assert rx.on("/landed") == [] and len(rx.on("/redirect")) == 3
    assert "X-Heldar-Signature" not in rx.on("/redirect")[0]["headers"]  # no secret, no signature
    # after giving up the cursor moved on: the next event is delivered (and fails) on its own
    write_event(env["url"], "recorder_error", camera_id="cam-y", severity="critical")
    wait_for(lambda: len(rx.on("/redirect")) >= 4)
    wait_for(lambda: len(deliveries(env, hook["id"])) == 6)  # given up again: nothing left running for later tests


def _delivery_counts(env: dict[str, Any]) -> dict[str, float]:
    text = env["client"].get("/metrics", headers=bearer(env["admin"])).text
    found = re.findall(r'^heldar_webhook_delivery_attempts_total\{outcome="(\w+)"\} (\S+)$', text, re.MULTILINE)
    counts = {outcome: float(value) for outcome, value in found}
    counts["observed"] = float(re.findall(r"^heldar_webhook_delivery_duration_seconds_count (\S+)$", text,
                                          re.MULTILINE)[0])  # fmt: skip
    return counts


def test_delivery_metrics_count_each_attempt_by_outcome(env) -> None:  # type: ignore[no-untyped-def]
    rx = env["rx"]
    before = _delivery_counts(env)
    assert set(before) == {"delivered", "failed", "gave_up", "observed"}
    only = {"event_types": ["recording_gap_failed"]}  # matched by no other subscription of this module
    ok = call(env, "POST", "/api/v1/webhooks", json={"name": "m-ok", "url": rx.url("/ok"), **only}).json()
    bad = call(env, "POST", "/api/v1/webhooks", json={"name": "m-bad", "url": rx.url("/redirect"), **only}).json()
    write_event(env["url"], "recording_gap_failed", camera_id="cam-m", severity="warning")
    wait_for(lambda: len(deliveries(env, ok["id"])) == 1 and len(deliveries(env, bad["id"])) == 3)
    after = _delivery_counts(env)
    # one 2xx, two failures that were retried, one last failure after which the event was skipped
    assert {k: after[k] - before[k] for k in after} == {"delivered": 1, "failed": 2, "gave_up": 1, "observed": 4}
    for hook in (ok, bad):
        assert call(env, "DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 204


def test_test_delivery_crud_and_audit(env) -> None:  # type: ignore[no-untyped-def]
    rx = env["rx"]
    hook = call(env, "POST", "/api/v1/webhooks", json={"name": "t", "url": rx.url("/ok"), "secret": SECRET,
                                                       "enabled": False}).json()  # fmt: skip
    r = call(env, "POST", f"/api/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["status"] == 200
    sent = rx.on("/ok")[-1]
    assert json.loads(sent["body"])["event_type"] == "test"
    assert verify(SECRET, sent["body"], sent["headers"]["X-Heldar-Signature"])
    assert deliveries(env, hook["id"])[0]["event_type"] == "test"
    down = call(env, "PATCH", f"/api/v1/webhooks/{hook['id']}", json={"url": rx.url("/down"), "secret": None})
    assert down.status_code == 200 and down.json()["has_secret"] is False and down.json()["enabled"] is False
    r = call(env, "POST", f"/api/v1/webhooks/{hook['id']}/test").json()
    assert r["ok"] is False and r["status"] == 503
    kept = call(env, "PATCH", f"/api/v1/webhooks/{hook['id']}", json={"name": "renamed"}).json()
    assert kept["url"] == rx.url("/down") and kept["name"] == "renamed"
    assert {h["id"] for h in call(env, "GET", "/api/v1/webhooks", role="viewer").json()} >= {hook["id"]}
    assert call(env, "DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert call(env, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries", role="viewer").status_code == 404
    actions = [r["action"] for r in audit_rows(env["url"], "webhook_update")] + [
        r["action"] for r in audit_rows(env["url"], "webhook_delete")]  # fmt: skip
    assert "webhook_update" in actions and "webhook_delete" in actions
    assert audit_rows(env["url"], "webhook_test") and audit_rows(env["url"], "webhook_create")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("ftp://example.com/", "http"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http://no-such-host.invalid/", "resolve"),
    ],
)
def test_unsafe_urls_are_refused(env, url: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    r = call(env, "POST", "/api/v1/webhooks", json={"name": "bad", "url": url})
    assert r.status_code == 422 and reason in r.json()["error"], r.text


def test_roles(env) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "v", "url": env["rx"].url("/ok")}
    assert call(env, "POST", "/api/v1/webhooks", json=body, role="viewer").status_code == 403
    assert call(env, "GET", "/api/v1/webhooks", role="viewer").status_code == 200
    assert env["client"].get("/api/v1/webhooks").status_code == 401
    assert env["client"].post("/api/v1/webhooks", json=body, headers=bearer(env["admin"])).status_code == 201
