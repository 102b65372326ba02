"""Cookie hardening (security F22) over HTTP with real PostgreSQL: cookie-authenticated mutations need the
CSRF token and a same-origin request, the Host allow-list, and a Secure cookie over HTTPS by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.test_auth_api import ADMIN_PASSWORD, ADMIN_USER, bearer, settings_for, start

pytestmark = pytest.mark.integration


def cookie_login(client: TestClient) -> dict[str, Any]:
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    assert client.cookies.get("heldar_session") and client.cookies.get("heldar_csrf") == r.json()["csrf_token"]
    return dict(r.json())


def camera(name: str) -> dict[str, Any]:
    return {"name": name, "main_stream_url": "rtsp://10.0.0.9/live"}


def test_cookie_mutations_need_the_token_and_the_same_origin(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with start(new_database(), settings_for(tmp_path)) as client:
        session = cookie_login(client)
        token = session["csrf_token"]
        # the attack from the issue: a cookie-only POST from a foreign page
        r = client.post("/api/v1/cameras", json=camera("evil"), headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, r.text
        r = client.post("/api/v1/cameras", json=camera("evil2"),
                        headers={"Origin": "http://evil.example", "X-Heldar-CSRF": token})  # fmt: skip
        assert r.status_code == 403  # the token does not excuse a foreign origin
        assert client.post("/api/v1/cameras", json=camera("no-token")).status_code == 403
        r = client.post("/api/v1/cameras", json=camera("cross"),
                        headers={"Sec-Fetch-Site": "cross-site", "X-Heldar-CSRF": token})  # fmt: skip
        assert r.status_code == 403
        r = client.post("/api/v1/cameras", json=camera("wrong"), headers={"X-Heldar-CSRF": "0" * 43})
        assert r.status_code == 403
        # body-less mutations are covered too
        uid = session["user"]["id"]
        assert client.post(f"/api/v1/users/{uid}/unlock").status_code == 403
        assert client.delete("/api/v1/cameras/anything").status_code == 403
        names = [c["name"] for c in client.get("/api/v1/cameras").json()]  # reads need no token
        assert not {"evil", "evil2", "no-token", "cross", "wrong"} & set(names)
        # the page itself: the token, same origin (or no Origin), same-origin fetch metadata
        for i, extra in enumerate([{}, {"Origin": "http://testserver"}, {"Sec-Fetch-Site": "same-origin"}]):
            r = client.post("/api/v1/cameras", json=camera(f"ok-{i}"), headers={"X-Heldar-CSRF": token, **extra})
            assert r.status_code == 201, r.text
        # a bearer or API-key caller is no browser: no token needed, even with the cookie jar present
        r = client.post("/api/v1/cameras", json=camera("bearer"), headers=bearer(session["token"]))
        assert r.status_code == 201
        # after logout the old token is worthless
        assert client.post("/api/v1/auth/logout").status_code == 204
        assert not client.cookies.get("heldar_csrf")


def test_allowed_hosts(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path, allowed_hosts="nvr.example, *.lan.example")
    with start(url, settings) as client:
        assert client.get("/healthz").status_code == 400  # Host: testserver (a DNS-rebinding page's host)
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    with TestClient(create_app(settings, url), base_url="http://nvr.example") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "cam.lan.example"}).status_code == 200


def test_secure_cookie_by_default_over_https(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path)
    start(url, settings).close()  # bootstrap the admin
    body = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    with TestClient(create_app(settings, url), base_url="https://testserver") as client:
        cookies = client.post("/api/v1/auth/login", json=body).headers.get_list("set-cookie")
        assert cookies and all("Secure" in c for c in cookies)
    with TestClient(create_app(settings, url), base_url="http://testserver") as client:
        cookies = client.post("/api/v1/auth/login", json=body).headers.get_list("set-cookie")
        assert cookies and not any("Secure" in c for c in cookies)  # plain HTTP on a LAN still works
    forced = settings_for(tmp_path, auth_cookie_secure=True)
    with TestClient(create_app(forced, url), base_url="http://testserver") as client:
        cookies = client.post("/api/v1/auth/login", json=body).headers.get_list("set-cookie")
        assert all("Secure" in c for c in cookies)
