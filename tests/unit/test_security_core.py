"""Security building blocks without I/O: sealing, masking, login throttling, probe limits, the in-memory
event filter, Standard Webhooks signing, CSRF tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from heldar.auth.throttle import LoginThrottle, ThrottlePolicy
from heldar.auth.tokens import csrf_token_for
from heldar.camera_urls import host_literal, mask_text, mask_url, parse_cidrs, url_passwords, vet_camera_url
from heldar.errors import TooManyRequests
from heldar.events.shared_reads import SharedEventRows, matches
from heldar.probe_limits import ProbeLimiter
from heldar.secrets.sealing import Sealer, SecretError, open_text, seal_bytes, seal_text
from heldar.store.event_reads import EventFilter
from heldar.webhooks.signing import sign_standard, verify_standard
from heldar.webhooks.ssrf import mask_target

KEY_A = "a" * 64
KEY_B = "the-second-key-which-is-long-enough-0001"


# --- sealing -----------------------------------------------------------------------------------------
def test_seal_open_and_purpose_binding() -> None:
    s = Sealer.from_strings(KEY_A)
    sealed = seal_text("hunter2-password", "camera-password", s)
    assert sealed is not None and sealed.startswith("enc:v1:") and "hunter2" not in sealed
    assert open_text(sealed, "camera-password", s) == "hunter2-password"
    assert seal_text(sealed, "camera-password", s) == sealed  # sealed under the current key: left alone
    assert seal_text("x", "camera-password", s) != seal_text("x", "camera-password", s)  # fresh nonce each time
    with pytest.raises(SecretError, match="webhook-secret") as info:
        open_text(sealed, "webhook-secret", s)  # pasted into another column
    assert "hunter2" not in str(info.value)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretError):
        open_text(tampered, "camera-password", s)
    assert open_text("clear-legacy", "camera-password", s) == "clear-legacy"  # from before sealing


def test_rotation_and_missing_keys() -> None:
    old = Sealer.from_strings(KEY_A)
    sealed = seal_text("pw-12345", "camera-password", old)
    assert sealed is not None
    rotating = Sealer.from_strings(KEY_B, KEY_A)
    assert rotating.needs_reseal(sealed) and not rotating.needs_reseal(seal_text("y", "p", rotating))
    assert open_text(sealed, "camera-password", rotating) == "pw-12345"
    resealed = seal_text(sealed, "camera-password", rotating)
    assert resealed != sealed and open_text(resealed, "camera-password", Sealer.from_strings(KEY_B)) == "pw-12345"
    with pytest.raises(SecretError, match="HELDAR_SECRET_KEY"):
        open_text(sealed, "camera-password", Sealer())  # no key at all
    assert seal_text("kept clear", "camera-password", Sealer()) == "kept clear"
    blob = seal_bytes(b"\x00\xffkey", "frame-ticket-key", old)
    assert blob.startswith(b"enc:v1:") and b"\xffkey" not in blob


# --- masking ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://cam/live?user=admin&password=s3cret", "rtsp://cam/live?user=admin&password=***"),
        ("http://nvr/replay?start={start}&pwd=x1&auth=Zm9v&token=t", "http://nvr/replay?start={start}&pwd=***&auth=***&token=***"),
        ("rtsp://admin:p@ss:w0rd@cam:554/x?api_key=k", "rtsp://admin:***@cam:554/x?api_key=***"),
        ("rtsp://cam/x?channel=1&subtype=0", "rtsp://cam/x?channel=1&subtype=0"),
    ],
)  # fmt: skip
def test_mask_url_hides_userinfo_and_query_credentials(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_survives_quotes_and_brackets() -> None:
    text = (
        'Error opening \'rtsp://admin:pa"ss@cam/x\': 401; [rtsp @ 0x1] "rtsp://u:a]b[c@h/y" '
        "<rtsp://u:p>q<@h/z> and http://nvr/r?password=pa'ss\"w&x=1"
    )
    out = mask_text(text)
    for leak in ('pa"ss', "a]b[c", "p>q<", "pa'ss"):
        assert leak not in out, (leak, out)
    assert "rtsp://admin:***@cam/x" in out and "password=***&x=1" in out
    assert url_passwords("rtsp://u:p%40ss@h/x?password=abc&k=1") == ("p%40ss", "p@ss", "abc")


def test_metadata_literals_in_every_spelling_and_the_allow_list() -> None:
    for host in ("169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "[::ffff:169.254.169.254]"):
        assert str(host_literal(host)) == "169.254.169.254", host
    assert host_literal("camera.local") is None and host_literal("cafe") is None
    nets = parse_cidrs("10.0.0.0/8, 192.168.1.5")

    async def vet(url: str) -> str | None:
        try:
            await vet_camera_url(url, nets)
        except ValueError as exc:
            return str(exc)
        return None

    assert asyncio.run(vet("rtsp://10.9.8.7/x")) is None
    assert asyncio.run(vet("rtsp://192.168.1.5/x")) is None
    assert "ALLOWED_CIDRS" in (asyncio.run(vet("rtsp://192.168.1.6/x")) or "")
    assert "metadata" in (asyncio.run(vet("http://169.254.169.254/?{start}")) or "")
    assert mask_target("https://hooks.slack.com/services/T/B/X?x=1") == "https://hooks.slack.com/…"
    assert mask_target("http://[::1]:8080/a") == "http://[::1]:8080/…"


# --- throttling and probe limits -------------------------------------------------------------------------
def test_throttle_windows_per_source_and_global() -> None:
    now = [1000.0]
    t = LoginThrottle(ThrottlePolicy(per_source_per_min=3, global_per_min=5), clock=lambda: now[0])
    for _ in range(3):
        t.admit("a")
    with pytest.raises(TooManyRequests) as info:
        t.admit("a")
    assert 0 < info.value.retry_after_s <= 60
    t.admit("b")
    t.admit("c")
    with pytest.raises(TooManyRequests, match="try again"):
        t.admit("d")  # the global window is full
    now[0] += 61
    t.admit("a")  # the window slid
    t.record_failure("u1", "a")
    t.record_failure("u1", "a")
    assert t.failures("u1", "a") == 2 and t.failures("u1", "b") == 0
    now[0] += 901
    assert t.failures("u1", "a") == 0


def test_hash_slots_are_bounded() -> None:
    async def run() -> tuple[int, int]:
        t = LoginThrottle(ThrottlePolicy(max_concurrent_hashes=2, hash_wait_s=0.1))
        running = peak = refused = 0

        async def one() -> None:
            nonlocal running, peak, refused
            try:
                async with t.hashing():
                    running += 1
                    peak = max(peak, running)
                    await asyncio.sleep(0.3)
                    running -= 1
            except TooManyRequests:
                refused += 1

        await asyncio.gather(*(one() for _ in range(6)))
        return peak, refused

    assert asyncio.run(run()) == (2, 4)


def test_probe_limiter() -> None:
    lim = ProbeLimiter(2)
    with lim.slot("a"):
        with pytest.raises(TooManyRequests, match="already running"), lim.slot("a"):
            pass
        with lim.slot("b"), pytest.raises(TooManyRequests, match="too many"), lim.slot("c"):
            pass
    assert lim.running == 0


# --- shared event reads ---------------------------------------------------------------------------------
def _row(seq: int, **kw: object) -> dict[str, object]:
    return {"seq": seq, "camera_id": "c1", "event_type": "zone_enter", "severity": "warning",
            "timestamp": datetime(2026, 1, 1, tzinfo=UTC), **kw}  # fmt: skip


def test_in_memory_filter_matches_the_sql_rules() -> None:
    row = _row(1)
    assert matches(EventFilter(), row)
    assert not matches(EventFilter(camera_id="c2"), row)
    assert not matches(EventFilter(min_severity="critical"), row) and matches(EventFilter(min_severity="info"), row)
    assert not matches(EventFilter(camera_scope=frozenset({"c2"})), row)
    assert not matches(EventFilter(camera_scope=frozenset({"c1"})), _row(2, camera_id=None))
    assert not matches(EventFilter(start=datetime(2026, 1, 2, tzinfo=UTC)), row)
    assert matches(EventFilter(end=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=1)), row)


def test_many_waiters_share_one_fetch() -> None:
    async def run() -> tuple[int, list[int]]:
        calls = 0

        async def fetch(seqs: list[int]) -> list[dict[str, object]]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return [_row(s) for s in seqs]

        shared = SharedEventRows(fetch)
        results = await asyncio.gather(*(shared.rows([5, 6], EventFilter()) for _ in range(50)))
        return calls, [len(r) for r in results]

    calls, sizes = asyncio.run(run())
    assert calls == 1 and set(sizes) == {2}


# --- signatures and tokens --------------------------------------------------------------------------------
def test_standard_webhooks_vector() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    sig = sign_standard(secret, "msg_1", 1700000000, b'{"a":1}')
    expected = base64.b64encode(hmac.new(b"k" * 24, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()).decode()
    assert sig == f"v1,{expected}"
    assert verify_standard(secret, "msg_1", "1700000000", b'{"a":1}', f"v1,bogus {sig}", now=1700000100)
    assert not verify_standard(secret, "msg_1", "1700000000", b'{"a":1}', sig, now=1700001000)
    plain = sign_standard("plain-secret", "m", 1, b"")
    assert plain == "v1," + base64.b64encode(hmac.new(b"plain-secret", b"m.1.", hashlib.sha256).digest()).decode()


def test_csrf_token_is_bound_to_the_session() -> None:
    a, b = csrf_token_for("vos_" + "1" * 64), csrf_token_for("vos_" + "2" * 64)
    assert a != b and len(a) == 43 and a == csrf_token_for("vos_" + "1" * 64)
