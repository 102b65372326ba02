"""Webhooks (security F14, F23) with real PostgreSQL and HTTP receivers: target URLs only for those who may
manage webhooks, the Standard Webhooks signature, and a slow receiver that delays nobody else and holds no
database transaction while it dawdles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from heldar.webhooks.signing import verify_standard
from tests.integration.test_auth_api import login, mint, settings_for, sql, start
from tests.integration.test_webhooks_api import Receiver, wait_for, write_event

pytestmark = pytest.mark.integration

STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    rx = Receiver(slow_s=4.0)
    settings = settings_for(tmp_path_factory.mktemp("wh"), webhook_allow_private=True, webhook_interval_s=0.2,
                            webhook_timeout_s=10)  # fmt: skip
    with start(url, settings) as client:
        admin = login(client)
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "guard", "integration", "manager")}  # fmt: skip
        yield {"url": url, "client": client, "keys": keys, "rx": rx}
    rx.close()


def call(env: dict[str, Any], method: str, path: str, role: str = "manager", **kw: Any) -> Any:
    return env["client"].request(method, path, headers={"X-API-Key": env["keys"][role]}, **kw)


def test_target_urls_are_shown_only_to_those_who_manage_webhooks(env: dict[str, Any]) -> None:
    secret_url = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX?token=abc"
    hook = call(env, "POST", "/api/v1/webhooks", json={"name": "slack", "url": env["rx"].url("/fast"),
                                                       "enabled": False})  # fmt: skip
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    # store a credential-bearing URL directly (its host does not resolve here, so the API would refuse it)
    sql(env["url"], "UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", hook_id, secret_url)
    for role in ("viewer", "guard", "integration"):
        one = call(env, "GET", f"/api/v1/webhooks/{hook_id}", role=role)
        assert one.status_code == 200, one.text
        assert one.json()["url"] == "https://hooks.slack.com/…"
        listed = call(env, "GET", "/api/v1/webhooks", role=role).json()
        assert "XXXXXXXX" not in json.dumps(listed) and "token=abc" not in json.dumps(listed)
    assert call(env, "GET", f"/api/v1/webhooks/{hook_id}").json()["url"] == secret_url
    audit = sql(env["url"], "SELECT detail::text AS d FROM audit_log WHERE action = 'webhook_create'")
    assert audit and all("/fast" not in a["d"] for a in audit)  # the audit trail keeps the host only
    call(env, "DELETE", f"/api/v1/webhooks/{hook_id}")


def test_standard_webhooks_signature(env: dict[str, Any]) -> None:
    rx = env["rx"]
    r = call(env, "POST", "/api/v1/webhooks", json={"name": "std", "url": rx.url("/fast"), "secret": STANDARD_SECRET,
                                                    "event_types": ["std_*"]})  # fmt: skip
    assert r.status_code == 201, r.text
    event_id = write_event(env["url"], "std_check", camera_id="cam-s")
    wait_for(lambda: any(json.loads(g["body"]).get("id") == event_id for g in rx.on("/fast")))
    got = next(g for g in rx.on("/fast") if json.loads(g["body"]).get("id") == event_id)
    h = {k.lower(): v for k, v in got["headers"].items()}
    assert h["webhook-id"] == event_id  # stable per event: a receiver dedupes retries by it
    ts = h["webhook-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    # computed here by hand, as a Standard Webhooks receiver does
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{event_id}.{ts}.".encode() + got["body"], hashlib.sha256).digest()
    assert h["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert verify_standard(STANDARD_SECRET, event_id, ts, got["body"], h["webhook-signature"], now=int(time.time()))
    # a replay with an old timestamp, or a changed body, fails
    assert not verify_standard(STANDARD_SECRET, event_id, ts, got["body"], h["webhook-signature"],
                               now=int(ts) + 3600)  # fmt: skip
    assert not verify_standard(STANDARD_SECRET, event_id, ts, got["body"] + b" ", h["webhook-signature"],
                               now=int(time.time()))  # fmt: skip
    assert h["x-heldar-signature"].startswith("sha256=")  # the original signature is still sent
    call(env, "DELETE", f"/api/v1/webhooks/{r.json()['id']}")


def test_a_slow_receiver_delays_nobody_and_holds_no_transaction(env: dict[str, Any]) -> None:
    rx = env["rx"]
    for name in ("slow", "fast"):
        r = call(env, "POST", "/api/v1/webhooks", json={"name": name, "url": rx.url(f"/{name}"),
                                                        "event_types": ["race_*"]})  # fmt: skip
        assert r.status_code == 201, r.text
    before_fast = len(rx.on("/fast"))
    started = time.monotonic()
    for i in range(3):
        write_event(env["url"], "race_event", camera_id="cam-r", payload={"i": i})
    wait_for(lambda: len(rx.on("/slow")) >= 1, 10)
    wait_for(lambda: len(rx.on("/fast")) >= before_fast + 3, 10)
    fast_done = rx.on("/fast")[-1]["at"] - started
    assert fast_done < 3.5, f"the fast receiver waited {fast_done:.1f} s behind the slow one"
    assert len(rx.on("/slow")) == 1  # still on its first event
    # while the slow POST is in flight, no connection of this database sits in an open transaction
    idle = sql(env["url"], "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                           " AND state LIKE 'idle in transaction%'")  # fmt: skip
    assert idle[0]["n"] == 0
    wait_for(lambda: len(rx.on("/slow")) >= 3, 20)  # and the slow one gets everything, in order
    assert [json.loads(g["body"])["payload"]["i"] for g in rx.on("/slow")] == [0, 1, 2]
