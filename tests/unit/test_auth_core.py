"""Auth logic without HTTP: hashing, tokens, lockout, sessions, grants, audit subjects, credentials."""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from api.auth_wiring import presented_token
from heldar.auth.audit import subject_camera_id
from heldar.auth.capabilities import CAPABILITIES, ROLE_CAPABILITIES, ROLES
from heldar.auth.grants import PRIVILEGED, GrantError, grant_from_row, validate_grant
from heldar.auth.lockout import LockoutPolicy
from heldar.auth.models import LoginRequest, UserCreate
from heldar.auth.passwords import Argon2Params, Passwords, check_password_policy
from heldar.auth.sessions import SessionPolicy, should_touch_key
from heldar.auth.tokens import (
    hash_token,
    is_api_key,
    is_well_formed,
    key_prefix,
    mask_token,
    mint_api_key,
    mint_session_token,
)

FAST = Argon2Params(time_cost=1, memory_kib=8, parallelism=1)
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


# --- passwords ------------------------------------------------------------------------------------


def test_argon2id_hash_round_trip() -> None:
    pw = Passwords(FAST)
    stored = pw.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert pw.verify(stored, "correct horse battery")
    assert not pw.verify(stored, "wrong horse battery")
    assert not pw.verify("not-a-hash", "whatever1")


def test_default_parameters_are_secure_and_rehash_is_detected() -> None:
    assert Argon2Params() == Argon2Params(time_cost=3, memory_kib=65536, parallelism=4)
    weak = Passwords(FAST).hash("password123")
    assert Passwords(Argon2Params(time_cost=2, memory_kib=8, parallelism=1)).needs_rehash(weak)
    assert not Passwords(FAST).needs_rehash(weak)


def test_password_policy() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        check_password_policy("short")
    with pytest.raises(ValueError, match="at most"):
        check_password_policy("x" * 5000)
    assert check_password_policy("12345678") == "12345678"
    with pytest.raises(ValueError):
        UserCreate(username="bob", password="1234567")
    with pytest.raises(ValueError):
        UserCreate(username="bob' OR 1=1 --", password="12345678")
    with pytest.raises(ValueError):
        LoginRequest(username="a\x00b", password="12345678")
    with pytest.raises(ValueError):
        LoginRequest(username="ok", password="\ud800bad-surrogate")


def test_dummy_verification_costs_what_a_real_one_costs() -> None:
    pw = Passwords(Argon2Params(time_cost=2, memory_kib=8192, parallelism=1))
    stored = pw.hash("the real password")
    pw.verify_dummy("warm-up")

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    real = timed(lambda: pw.verify(stored, "a wrong password"))
    dummy = timed(lambda: pw.verify_dummy("a wrong password"))
    assert 0.33 < dummy / real < 3.0, (real, dummy)


# --- tokens ---------------------------------------------------------------------------------------


def test_token_shapes_hashes_and_masking() -> None:
    session, key = mint_session_token(), mint_api_key()
    assert re.fullmatch(r"vos_[0-9a-f]{64}", session) and re.fullmatch(r"vok_[0-9a-f]{64}", key)
    assert is_well_formed(session) and is_well_formed(key) and not is_well_formed("vos_xyz")
    assert is_api_key(key) and not is_api_key(session)
    assert hash_token(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key_prefix(key) == key[:12] and len(key_prefix(key)) == 12
    assert mask_token(key) == key[:8] + "…" and key[8:] not in mask_token(key)
    assert mask_token(None) == "-"
    assert mint_session_token() != session
    assert len(hash_token("\udcff odd")) == 64  # never raises, whatever the header held


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


def test_credential_lookup_order_bearer_then_api_key_then_cookie() -> None:
    both = {"Authorization": "Bearer b-token", "X-API-Key": "k-token", "Cookie": "heldar_session=c-token"}
    assert presented_token(_request(both)) == "b-token"
    assert presented_token(_request({"X-API-Key": "k-token", "Cookie": "heldar_session=c-token"})) == "k-token"
    assert presented_token(_request({"Cookie": "heldar_session=c-token"})) == "c-token"
    assert presented_token(_request({"Authorization": "Basic Zm9vOmJhcg==", "X-API-Key": "k"})) == "k"
    assert presented_token(_request({})) is None


# --- lockout and sessions -------------------------------------------------------------------------


def test_lockout_decision() -> None:
    policy = LockoutPolicy(max_failures=3, lockout_minutes=10)
    assert policy.next_state(0, None, NOW) == (1, None)
    assert policy.next_state(1, None, NOW) == (2, None)
    assert policy.next_state(2, None, NOW) == (3, NOW + timedelta(minutes=10))
    expired = NOW - timedelta(seconds=1)
    assert policy.next_state(3, expired, NOW) == (1, None)  # a spent lock starts the count afresh
    assert policy.is_locked(NOW + timedelta(seconds=1), NOW) and not policy.is_locked(expired, NOW)
    assert not LockoutPolicy(0, 10).enabled and not LockoutPolicy(3, 0).enabled
    assert LockoutPolicy(0, 10).next_state(99, None, NOW) == (100, None)


def test_session_ttl_idle_and_debounce() -> None:
    policy = SessionPolicy(ttl_hours=2, idle_timeout_min=0)
    expires = policy.expires_at(NOW)
    assert expires == NOW + timedelta(hours=2) and policy.max_age_s == 7200
    assert policy.is_valid(expires, NOW - timedelta(days=1), NOW)
    assert not policy.is_valid(NOW, NOW, NOW)
    idle = SessionPolicy(ttl_hours=2, idle_timeout_min=10)
    assert idle.is_valid(expires, NOW - timedelta(minutes=9), NOW)
    assert not idle.is_valid(expires, NOW - timedelta(minutes=11), NOW)
    assert policy.touch_debounce == timedelta(minutes=1)
    assert idle.touch_debounce == timedelta(minutes=1)
    assert SessionPolicy(1, idle_timeout_min=2).touch_debounce == timedelta(seconds=30)
    assert not policy.should_touch(NOW - timedelta(seconds=30), NOW)
    assert policy.should_touch(NOW - timedelta(seconds=61), NOW)
    assert should_touch_key(None, NOW) and not should_touch_key(NOW - timedelta(seconds=5), NOW)


# --- roles and grants -----------------------------------------------------------------------------


def test_role_table_matches_upstream() -> None:
    assert ROLES == ("admin", "manager", "guard", "viewer", "integration")
    assert ROLE_CAPABILITIES["admin"] == frozenset(CAPABILITIES)
    for role in ("manager", "guard", "viewer", "integration"):
        assert "admin" not in ROLE_CAPABILITIES[role]
        assert {"camera:read", "video:playback", "system:read"} <= ROLE_CAPABILITIES[role]
    assert "registry:manage" in ROLE_CAPABILITIES["manager"]
    assert "registry:manage" not in ROLE_CAPABILITIES["guard"]
    assert "gate:operate" in ROLE_CAPABILITIES["guard"] and "gate:operate" not in ROLE_CAPABILITIES["viewer"]
    assert {"ai:ingest", "ai:embedwork"} <= ROLE_CAPABILITIES["integration"]
    assert "ai:ingest" not in ROLE_CAPABILITIES["manager"]


def test_grant_rules() -> None:
    g = validate_grant("viewer", None, "all", [], confirm_privileged=False)
    assert g.effective == ROLE_CAPABILITIES["viewer"] and g.camera_scope is None
    g = validate_grant(
        "integration", ["camera:read", "camera:read"], "cameras", ["cam-b", "cam-a"], confirm_privileged=False
    )
    assert g.capabilities == ("camera:read",) and g.camera_scope == frozenset({"cam-a", "cam-b"})
    assert g.as_detail()["scope_cameras"] == ["cam-a", "cam-b"]
    bad = [
        (("root", None, "all", []), "unknown role"),
        (("viewer", [], "all", []), "must not be empty"),
        (("viewer", ["camera:read", "x:y"], "all", []), "unknown capabilities"),
        (("viewer", ["camera:read"], "some", []), "scope_kind"),
        (("viewer", ["camera:read"], "all", ["cam-a"]), "needs scope_kind"),
        (("viewer", ["camera:read"], "cameras", []), "non-empty"),
        (("viewer", ["camera:read"], "cameras", [" "]), "camera ids"),
        (("viewer", ["camera:read"], "cameras", ["' OR 1=1 --"]), "camera ids"),
        (("viewer", None, "cameras", ["cam-a"]), "explicit capabilities"),
        (("viewer", ["events:read"], "cameras", ["cam-a"]), "cannot hold"),
        (("viewer", ["identity:read"], "cameras", ["cam-a"]), "cannot hold"),
        (("viewer", ["registry:manage"], "all", []), "confirm_privileged"),
        (("admin", None, "all", []), "confirm_privileged"),
        (("manager", None, "all", []), "confirm_privileged"),
    ]
    for args, message in bad:
        with pytest.raises(GrantError, match=message):
            validate_grant(*args, confirm_privileged=False)
    for cap in PRIVILEGED - {"admin"}:
        validate_grant("viewer", [cap], "cameras", ["cam-a"], confirm_privileged=True)
    # keeping a privileged capability through a rescope needs no new confirmation
    validate_grant("manager", None, "all", [], confirm_privileged=False, previously=ROLE_CAPABILITIES["manager"])


def test_grants_from_stored_rows() -> None:
    grant, unknown = grant_from_row("viewer", ["camera:read", "gone:cap"], "all", [])
    assert grant is not None and grant.effective == {"camera:read"} and unknown == ["gone:cap"]
    assert grant_from_row("viewer", None, "all", [])[0] is not None
    malformed = [
        ("root", None, "all", []),
        ("viewer", "camera:read", "all", []),
        ("viewer", ["gone:cap"], "all", []),
        ("viewer", None, "cameras", ["cam-a"]),
        ("viewer", ["camera:read"], "cameras", []),
        ("viewer", ["admin"], "cameras", ["cam-a"]),
        ("viewer", ["camera:read"], "all", ["cam-a"]),
        ("viewer", ["camera:read"], "cameras", "cam-a"),
    ]
    for row in malformed:
        assert grant_from_row(*row)[0] is None, row


# --- audit subjects -------------------------------------------------------------------------------


def test_audit_subject_camera_derivation() -> None:
    assert subject_camera_id("camera", "cam-a", {}) == "cam-a"
    assert subject_camera_id("camera", "*", {}) is None
    assert subject_camera_id("zone", "zone_1", {"camera_id": "cam-b"}) == "cam-b"
    assert subject_camera_id("task", "t", {"camera_ids": ["cam-c"]}) == "cam-c"
    assert subject_camera_id("task", "t", {"camera_ids": ["cam-c", "cam-d"]}) is None
    assert subject_camera_id("task", "t", {"camera_ids": ["*"]}) is None
    assert subject_camera_id("user", "usr_1", {"username": "x"}) is None
    assert subject_camera_id("gap", "gap_1", {"camera_id": 7}) is None
