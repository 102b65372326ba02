"""What ``/readyz`` decides, as a plain function of what was observed.

Ready means: the database answers, the supervisor answers and says its loops run (``ping()["ok"]`` and every
``ping()["loops"]`` value true; a ``ping`` without ``loops`` counts as running), its role is not ``starting``,
and, when ``HELDAR_READYZ_MIN_RECORDING_PERCENT`` > 0, at least that share of the cameras that should record
is ``recording`` (upstream's quorum). The body always says why: ``reason`` names each failing check
(``database``, ``supervisor``, ``insufficient_recorders``) and ``details`` explains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

READY_ROLES = ("active", "standby")


@dataclass(frozen=True)
class RecorderCounts:
    expected: int  # cameras that should be recording (enabled, recording on)
    recording: int  # of those, the ones whose recorder state is ``recording``

    @property
    def pct(self) -> float:
        return 100.0 if self.expected == 0 else round(100.0 * self.recording / self.expected, 1)


@dataclass
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)


def supervisor_problem(ping: Mapping[str, Any] | None, error: str | None = None) -> str | None:
    """None when the supervisor's ``ping`` answer means its loops run; else why not (one short phrase)."""
    if ping is None:
        return f"supervisor unreachable ({error})" if error else "supervisor unreachable"
    role = ping.get("role")
    if role is not None and role not in READY_ROLES:
        return f"supervisor is {role}"
    loops = ping.get("loops")
    stopped = sorted(name for name, running in (loops or {}).items() if not running)
    if stopped:
        return "supervisor loops not running: " + ", ".join(stopped)
    if ping.get("db_ok") is False:
        return "supervisor cannot reach the database"
    if not ping.get("ok"):
        return "supervisor reports not ok"
    return None


def assess(
    *,
    database_ok: bool,
    database_error: str | None,
    ping: Mapping[str, Any] | None,
    ping_error: str | None,
    required_pct: float,
    recorders: RecorderCounts | None,
) -> Readiness:
    """Combine the observations into the answer; ``recorders`` is None when they could not be counted."""
    checks: dict[str, bool] = {"database": database_ok}
    details: dict[str, str] = {}
    if not database_ok:
        details["database"] = f"database unreachable ({database_error})" if database_error else "database unreachable"
    problem = supervisor_problem(ping, ping_error)
    checks["supervisor"] = problem is None
    if problem is not None:
        details["supervisor"] = problem
    body: dict[str, Any] = {
        "supervisor": {
            "reachable": ping is not None,
            "role": (ping or {}).get("role"),
            "loops": dict((ping or {}).get("loops") or {}),
        },
        "required_pct": required_pct,
    }
    if recorders is not None:  # None: the database is down, and that is the reason given
        body.update(recording_pct=recorders.pct, recording=recorders.recording, expected=recorders.expected)
        if required_pct > 0:
            checks["recorders"] = recorders.pct >= required_pct
            if not checks["recorders"]:
                details["insufficient_recorders"] = (
                    f"{recorders.recording} of {recorders.expected} cameras recording"
                    f" ({recorders.pct:g}% < {required_pct:g}%)"
                )
    reasons = [name for name in ("database", "supervisor") if not checks[name]]
    if checks.get("recorders") is False:
        reasons.append("insufficient_recorders")
    ready = not reasons
    out: dict[str, Any] = {"ready": ready}
    if not ready:
        out["reason"] = ",".join(reasons)
        out["details"] = details
    out["checks"] = checks
    out.update(body)
    return Readiness(ready=ready, reasons=reasons, body=out)
