"""Login brute force (security F2, F3c, F20) over HTTP with real PostgreSQL: the lockout holds under any
concurrency, logins are throttled per source and in total (429 + Retry-After), password hashes are bounded,
and a locked account still admits its owner from an address it logged in from before."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth_wiring import auth_service, bootstrap_admin
from config import Settings, load_settings
from heldar.auth.passwords import Passwords
from tests.integration.sql import sql

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "sec-admin", "Sec-Admin-Passw0rd"
VICTIM, VICTIM_PASSWORD = "victim", "Victim-Passw0rd-1"


class SourceFromHeader:
    """Test harness: the ASGI client address from ``x-test-source`` (as uvicorn would set it from the socket
    or a trusted proxy), so one in-process app sees several sources."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == b"x-test-source":
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "auth_enabled": True,
        "bootstrap_admin_user": ADMIN_USER,
        "bootstrap_admin_password": ADMIN_PASSWORD,
        "login_max_failures": 3,
        "login_lockout_min": 15,
        "login_rate_per_source_per_min": 0,
        "login_rate_global_per_min": 0,
        # a few ms per hash: wide enough a window for the old read-then-verify race to show
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 4096,
        "password_hash_parallelism": 1,
    }
    values.update(overrides)
    return load_settings(**values)


def login(client: TestClient, user: str, password: str, source: str = "10.1.1.1") -> Any:
    return client.post(
        "/api/v1/auth/login", json={"username": user, "password": password}, headers={"x-test-source": source}
    )


def make_user(client: TestClient, admin_token: str, username: str, password: str, role: str = "viewer") -> None:
    r = client.post(
        "/api/v1/users",
        json={"username": username, "password": password, "role": role},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert r.status_code == 201, r.text


@pytest.fixture
def env(new_database, tmp_path: Path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    url = new_database()

    def open_app(**overrides: Any) -> TestClient:
        settings = settings_for(tmp_path, **overrides)
        asyncio.run(bootstrap_admin(settings, url))
        return TestClient(SourceFromHeader(create_app(settings, url)))

    yield url, open_app


class CountingPasswords(Passwords):
    """The real argon2 hasher, counting how many real (non-dummy) verifications ran."""

    def __init__(self, inner: Passwords) -> None:
        self.__dict__.update(inner.__dict__)
        self.real = 0
        self._count_lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        if password_hash != self._dummy:
            with self._count_lock:
                self.real += 1
        return super().verify(password_hash, password)


def test_200_concurrent_wrong_logins_with_the_right_one_hidden_cannot_get_in(env: Any) -> None:
    url, open_app = env
    with open_app() as client:
        admin = login(client, ADMIN_USER, ADMIN_PASSWORD).json()["token"]
        make_user(client, admin, VICTIM, VICTIM_PASSWORD)
        service = auth_service(client.app.app.state.heldar)  # type: ignore[attr-defined]
        counting = CountingPasswords(service.passwords)
        service.passwords = counting
        right_at = {30, 45, 60, 90, 150}
        guesses = [VICTIM_PASSWORD if i in right_at else f"wrong-guess-{i:04d}" for i in range(200)]
        with ThreadPoolExecutor(max_workers=64) as pool:
            codes = list(pool.map(lambda pw: login(client, VICTIM, pw, "203.0.113.9").status_code, guesses))
        assert 200 not in codes, [i for i, c in enumerate(codes) if c == 200]
        assert set(codes) == {401}
        # however many ran at once, at most max_failures passwords were really checked
        assert counting.real <= 3, counting.real
        row = sql(url, "SELECT failed_login_count, locked_until FROM users WHERE username = $1", VICTIM)[0]
        assert row["locked_until"] is not None and row["failed_login_count"] == 3
        # then the right password from the attacking address: still locked
        assert login(client, VICTIM, VICTIM_PASSWORD, "203.0.113.9").status_code == 401
        # and from any other address that never logged in to this account: locked too
        assert login(client, VICTIM, VICTIM_PASSWORD, "198.51.100.7").status_code == 401


def test_a_lock_set_while_a_right_password_was_being_checked_is_honoured(env: Any) -> None:
    """The re-check after the slow hash: the account locks by other attempts during the hash → refused."""
    url, open_app = env
    with open_app() as client:
        admin = login(client, ADMIN_USER, ADMIN_PASSWORD).json()["token"]
        make_user(client, admin, VICTIM, VICTIM_PASSWORD)
        service = auth_service(client.app.app.state.heldar)  # type: ignore[attr-defined]
        inner_verify = service.passwords.verify
        gate = threading.Event()

        def slow_verify(password_hash: str, password: str) -> bool:
            if password == VICTIM_PASSWORD:
                # while this right password is being checked, the attacker locks the account
                sql(url, "UPDATE users SET failed_login_count = 3, locked_until = now() + interval '15 min'"
                    " WHERE username = $1", VICTIM)  # fmt: skip
                gate.set()
            return inner_verify(password_hash, password)

        service.passwords.verify = slow_verify  # type: ignore[method-assign]
        r = login(client, VICTIM, VICTIM_PASSWORD, "203.0.113.10")
        assert gate.is_set()
        assert r.status_code == 401
        assert sql(url, "SELECT locked_until FROM users WHERE username = $1", VICTIM)[0]["locked_until"] is not None


def test_the_owner_gets_in_from_a_known_address_while_an_attacker_keeps_the_account_locked(env: Any) -> None:
    url, open_app = env
    with open_app() as client:
        home = "192.168.7.20"
        assert login(client, ADMIN_USER, ADMIN_PASSWORD, home).status_code == 200  # home is now known
        for i in range(10):
            assert login(client, ADMIN_USER, f"bad-{i}-password", "203.0.113.50").status_code == 401
        assert sql(url, "SELECT locked_until FROM users WHERE username = $1", ADMIN_USER)[0]["locked_until"]
        # the attacker holding the right password from elsewhere is still refused
        assert login(client, ADMIN_USER, ADMIN_PASSWORD, "203.0.113.50").status_code == 401
        # the admin from home gets in, and that clears the lock
        r = login(client, ADMIN_USER, ADMIN_PASSWORD, home)
        assert r.status_code == 200, r.text
        assert sql(url, "SELECT locked_until FROM users WHERE username = $1", ADMIN_USER)[0]["locked_until"] is None
        # an attacker at the known address is bounded too: its own failures use up its exemption
        for i in range(3):
            login(client, ADMIN_USER, f"bad-again-{i}", "203.0.113.51")  # locks again from elsewhere
        for i in range(3):
            assert login(client, ADMIN_USER, f"home-bad-{i}", home).status_code == 401
        assert login(client, ADMIN_USER, ADMIN_PASSWORD, home).status_code == 401


def test_logins_are_throttled_per_source_and_in_total_with_retry_after(env: Any) -> None:
    _, open_app = env
    with open_app(login_rate_per_source_per_min=5, login_rate_global_per_min=8) as client:
        codes = [login(client, "nobody", f"pw-{i}-xxxxxx", "203.0.113.1").status_code for i in range(7)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
        r = login(client, ADMIN_USER, ADMIN_PASSWORD, "203.0.113.1")
        assert r.status_code == 429  # even the right password, from the throttled address
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert r.json()["error"]
        # another address still gets through until the global limit is reached
        assert login(client, ADMIN_USER, ADMIN_PASSWORD, "198.51.100.1").status_code == 200
        others = [login(client, "nobody", "pw-zzzzzzzz", f"198.51.100.{i}").status_code for i in range(2, 6)]
        assert others[:2] == [401, 401] and others[2:] == [429, 429]
        assert "Retry-After" in login(client, "x", "y" * 8, "198.51.100.99").headers


def test_password_hashes_are_bounded_and_a_login_that_cannot_get_a_slot_is_429(env: Any) -> None:
    _, open_app = env
    with open_app(login_max_concurrent_hashes=1) as client:
        service = auth_service(client.app.app.state.heldar)  # type: ignore[attr-defined]
        service.throttle.policy = type(service.throttle.policy)(
            **{**service.throttle.policy.__dict__, "hash_wait_s": 0.2}
        )
        inner = service.passwords.verify_dummy
        running = 0
        peak = 0
        lock = threading.Lock()

        def slow_dummy(password: str) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                threading.Event().wait(0.5)
                inner(password)
            finally:
                with lock:
                    running -= 1

        service.passwords.verify_dummy = slow_dummy  # type: ignore[method-assign]
        with ThreadPoolExecutor(max_workers=6) as pool:
            codes = list(pool.map(lambda i: login(client, "ghost", "pw-xxxxxxxx", f"10.9.9.{i}").status_code, range(6)))
        assert peak == 1
        assert codes.count(429) >= 4 and codes.count(401) >= 1
