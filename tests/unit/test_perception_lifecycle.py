"""The perception unit lifecycle and health verdicts, without Ray; the fleet's pure planning."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from heldar.perception.fleet import SettingsStamp, plan_samplers, sampler_health_state, unit_signature
from heldar.perception.lifecycle import HealthCheck, IllegalTransition, UnitLifecycle, UnitState, is_hung
from heldar.store.perception import SamplerUnit


def test_start_run_fail_back_off_and_crash_loop_each_with_a_cause() -> None:
    life = UnitLifecycle("sampler:a:sub", base_delay_s=1, max_delay_s=8, crash_loop_after=4, crash_loop_window_s=60)
    assert life.state is UnitState.PENDING
    life.starting("created", 0)
    life.running("sampling", 1)
    delays = []
    for t in (10, 11, 12):
        delays.append(life.failure("no answer", t))
        assert life.state is UnitState.BACKING_OFF and not life.due(t) and life.due(t + delays[-1])
        life.starting("replaced", t)
    assert delays == [1, 2, 4]
    life.failure("hung", 13)
    assert life.state is UnitState.CRASH_LOOP and life.cause == "hung" and life.retry_at == 13 + 60
    assert [t.state for t in life.history][:3] == [UnitState.STARTING, UnitState.RUNNING, UnitState.BACKING_OFF]
    assert life.restarts == 3
    life.starting("retry", 80)
    life.running("healthy", 81)
    assert life.view()["state"] == "running"


def test_failures_outside_the_window_do_not_make_a_crash_loop() -> None:
    life = UnitLifecycle("x", crash_loop_after=3, crash_loop_window_s=10)
    life.starting("created", 0)
    for t in (0, 20, 40, 60):
        life.failure("died", t)
        assert life.state is UnitState.BACKING_OFF
        life.starting("retry", t)


def test_illegal_transition_is_refused() -> None:
    life = UnitLifecycle("x")
    with pytest.raises(IllegalTransition):
        life.failure("died", 0)  # pending units have not started


def test_health_check_needs_consecutive_bad_answers() -> None:
    check = HealthCheck(unhealthy_after=2)
    assert not check.observe(False, "no answer")
    assert not check.observe(True)
    assert not check.observe(False, "hung")
    assert check.observe(False, "hung") and check.last_reason == "hung"
    assert is_hung(10.0, 10.0) and not is_hung(None, 1.0) and not is_hung(3.0, 10.0)


@dataclass
class Cam:
    sub: str | None
    main: str

    def stream_url(self, profile: str) -> str | None:
        return self.sub if profile == "sub" else self.main

    def record_url(self) -> str | None:
        return self.main


def unit(camera: str, profile: str, fps: float, priority: int = 0) -> SamplerUnit:
    return SamplerUnit(camera, profile, fps, 640, priority, (("ai_1", "motion", "{}"),), "t")


def test_plan_grants_every_unit_and_falls_back_to_the_record_url() -> None:
    plan = plan_samplers([unit("a", "sub", 5), unit("b", "main", 5), unit("ghost", "sub", 5)],
                         {"a": Cam(None, "rtsp://a/main"), "b": Cam("rtsp://b/sub", "rtsp://b/main")}, 40)  # fmt: skip
    assert set(plan.grants) == {("a", "sub"), ("b", "main"), ("ghost", "sub")}
    assert plan.desired[("a", "sub")]["url"] == "rtsp://a/main"  # no sub stream: the record URL
    assert plan.desired[("b", "main")]["tasks"] == [["ai_1", "motion", "{}"]]
    assert ("ghost", "sub") not in plan.desired  # camera gone: granted but not run
    assert unit_signature(plan.desired[("a", "sub")]) != unit_signature(plan.desired[("b", "main")])


def test_zero_budget_runs_nothing() -> None:
    plan = plan_samplers([unit("a", "sub", 5)], {"a": Cam(None, "rtsp://a")}, 0)
    assert plan.desired == {} and plan.grants[("a", "sub")]["fps"] == 0


def test_sampler_health_state_and_settings_stamp() -> None:
    assert sampler_health_state({"state": "sampling"}) == "sampling"
    assert sampler_health_state({"state": "connecting", "reconnects": 2}) == "offline"
    assert sampler_health_state({"state": "connecting", "reconnects": 0}) == "connecting"
    assert SettingsStamp.of({"a": 1, "b": 2}).digest == SettingsStamp.of({"b": 2, "a": 1}).digest
    assert SettingsStamp.of({"a": 1}).digest != SettingsStamp.of({"a": 2}).digest
