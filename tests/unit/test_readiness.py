from __future__ import annotations

from typing import Any

import pytest

from heldar.readiness import RecorderCounts, assess, supervisor_problem

RUNNING: dict[str, Any] = {"ok": True, "role": "active", "loops": {"reconcile": True, "health": True}, "db_ok": True}


def _assess(**overrides: Any):  # type: ignore[no-untyped-def]
    args: dict[str, Any] = dict(
        database_ok=True, database_error=None, ping=RUNNING, ping_error=None, required_pct=0.0, recorders=None
    )
    args.update(overrides)
    return assess(**args)


def test_all_good_is_ready_and_says_what_it_checked() -> None:
    result = _assess(recorders=RecorderCounts(expected=4, recording=3))
    assert result.ready and result.reasons == []
    assert result.body["checks"] == {"database": True, "supervisor": True}
    assert result.body["recording_pct"] == 75.0 and result.body["required_pct"] == 0.0
    assert "reason" not in result.body and "details" not in result.body


@pytest.mark.parametrize(
    ("ping", "error", "problem"),
    [
        (None, "timed out", "supervisor unreachable (timed out)"),
        (None, None, "supervisor unreachable"),
        ({"ok": True}, None, None),  # no loops, no role (the supervisor before its ping grew them): running
        ({**RUNNING, "role": "standby"}, None, None),
        ({**RUNNING, "role": "starting"}, None, "supervisor is starting"),
        (
            {**RUNNING, "ok": False, "loops": {"b": False, "a": False, "c": True}},
            None,
            "supervisor loops not running: a, b",
        ),
        ({**RUNNING, "ok": False, "db_ok": False}, None, "supervisor cannot reach the database"),
        ({**RUNNING, "ok": False}, None, "supervisor reports not ok"),
        ({"loops": {}}, None, "supervisor reports not ok"),
    ],
)
def test_supervisor_problem(ping: dict[str, Any] | None, error: str | None, problem: str | None) -> None:
    assert supervisor_problem(ping, error) == problem


def test_every_failing_check_is_a_reason_with_details() -> None:
    result = _assess(
        ping={**RUNNING, "ok": False, "loops": {"health": False}},
        required_pct=80,
        recorders=RecorderCounts(expected=3, recording=2),
    )
    assert not result.ready
    assert result.body["reason"] == "supervisor,insufficient_recorders"
    assert result.body["details"] == {
        "supervisor": "supervisor loops not running: health",
        "insufficient_recorders": "2 of 3 cameras recording (66.7% < 80%)",
    }
    assert result.body["recording_pct"] == 66.7 and result.body["required_pct"] == 80


def test_database_down_is_the_reason_not_the_quorum() -> None:
    result = _assess(database_ok=False, database_error="ConnectionRefusedError", required_pct=50)
    assert result.reasons == ["database"]
    assert result.body["details"] == {"database": "database unreachable (ConnectionRefusedError)"}
    assert "recording_pct" not in result.body


@pytest.mark.parametrize(
    ("expected", "recording", "required", "ready"),
    [(0, 0, 100, True), (4, 3, 75, True), (4, 2, 75, False), (3, 3, 100, True), (10, 0, 0.1, False)],
)
def test_quorum_edges(expected: int, recording: int, required: float, ready: bool) -> None:
    result = _assess(required_pct=required, recorders=RecorderCounts(expected=expected, recording=recording))
    assert result.ready is ready
    assert result.body["checks"]["recorders"] is ready
