"""Webhook core: signatures over exact bytes, the SSRF guard, backoff, body, filters, pinned URLs."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from heldar.events.taxonomy import severity_at_least, type_matches
from heldar.webhooks.delivery import event_body, pinned_url, request_headers, retry_delay
from heldar.webhooks.notifier import matches
from heldar.webhooks.signing import sign, verify
from heldar.webhooks.ssrf import Target, UnsafeTarget, address_refusal, parse_url, resolve_target


def test_signature_is_hmac_sha256_over_the_exact_body() -> None:
    body = b'{"a":1}'
    expected = "sha256=" + hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
    assert sign("s3cret-key", body) == expected
    assert verify("s3cret-key", body, expected) and not verify("s3cret-key", body + b" ", expected)
    assert not verify("other-key", body, expected) and not verify("s3cret-key", body, None)
    headers = request_headers("zone_enter", "whd_1", body, "s3cret-key")
    assert headers["X-Heldar-Signature"] == expected and headers["X-Heldar-Event"] == "zone_enter"
    assert "X-Heldar-Signature" not in request_headers("zone_enter", "whd_1", body, None)


@pytest.mark.parametrize(
    ("address", "private_ok", "refused"),
    [
        ("127.0.0.1", False, "loopback"),
        ("::1", False, "loopback"),
        ("169.254.10.1", False, "link-local"),
        ("fe80::1", False, "link-local"),
        ("169.254.169.254", True, "metadata"),
        ("fd00:ec2::254", True, "metadata"),
        ("::ffff:169.254.169.254", True, "metadata"),
        ("::ffff:127.0.0.1", False, "loopback"),
        ("0.0.0.0", True, "unicast"),
        ("224.0.0.1", True, "unicast"),
    ],
)
def test_refused_addresses(address: str, private_ok: bool, refused: str) -> None:
    why = address_refusal(address, allow_private=private_ok)
    assert why is not None and refused in why


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.20", "8.8.8.8", "2001:db8::1"])
def test_allowed_addresses(address: str) -> None:
    assert address_refusal(address, allow_private=False) is None
    assert address_refusal("127.0.0.1", allow_private=True) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http"),
        ("http:///x", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "malformed"),
        ("", "characters"),
    ],
)
def test_bad_urls(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget, match=reason):
        parse_url(url)


async def test_resolution_is_checked() -> None:
    with pytest.raises(UnsafeTarget, match="loopback"):
        await resolve_target("http://localhost:8080/hook", allow_private=False)
    target = await resolve_target("http://localhost:8080/hook", allow_private=True)
    assert target.port == 8080 and target.address in ("127.0.0.1", "::1")
    with pytest.raises(UnsafeTarget, match="metadata"):
        await resolve_target("http://169.254.169.254/latest/meta-data", allow_private=True)
    with pytest.raises(UnsafeTarget, match="resolve"):
        await resolve_target("http://no-such-host.invalid/", allow_private=True)


def test_pinned_url_keeps_path_and_query() -> None:
    t = Target("https://hooks.example.com/a/b?x=1", "https", "hooks.example.com", 443, "10.1.2.3")
    assert pinned_url(t) == "https://10.1.2.3:443/a/b?x=1"
    t6 = Target("http://h/", "http", "h", 80, "2001:db8::1")
    assert pinned_url(t6) == "http://[2001:db8::1]:80/"


def test_backoff_is_exponential_and_capped() -> None:
    assert [retry_delay(a, 2, 30) for a in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_body_is_stable_json() -> None:
    ev = {"id": "e1", "seq": 4, "camera_id": "cam", "event_type": "zone_enter", "severity": "info",
          "timestamp": datetime(2026, 1, 1, tzinfo=UTC), "payload": {"b": 1, "a": 2},
          "created_at": "ignored"}  # fmt: skip
    body = event_body(ev)
    assert body == event_body(dict(reversed(list(ev.items()))))
    doc = json.loads(body)
    assert doc == {"id": "e1", "seq": 4, "camera_id": "cam", "event_type": "zone_enter", "severity": "info",
                   "timestamp": "2026-01-01T00:00:00+00:00", "payload": {"a": 2, "b": 1}}  # fmt: skip


def test_type_and_severity_filters() -> None:
    assert type_matches(["*"], "x") and type_matches(["zone_*"], "zone_enter") and not type_matches(["zone_*"], "z")
    assert type_matches(["camera_offline"], "camera_offline") and not type_matches([], "camera_offline")
    assert severity_at_least("critical", "warning") and not severity_at_least("info", "warning")
    hook = {"event_types": ["zone_*"], "min_severity": "warning"}
    assert matches(hook, {"event_type": "zone_exit", "severity": "critical"})
    assert not matches(hook, {"event_type": "zone_exit", "severity": "info"})
    assert not matches(hook, {"event_type": "recording_gap", "severity": "critical"})
