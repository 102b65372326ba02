"""Perception units on the supervision lifecycle (health threshold, cause of each transition), the hung rule,
and the fleet's pure planning, without Ray."""

from __future__ import annotations

from dataclasses import dataclass

from heldar.perception.fleet import SettingsStamp, plan_samplers, sampler_health_state, unit_signature
from heldar.perception.lifecycle import UnitState, is_hung
from heldar.perception.lifecycle import unit as perception_unit
from heldar.store.perception import SamplerUnit


def test_a_perception_unit_is_replaced_after_two_bad_health_answers_with_the_cause() -> None:
    life = perception_unit("detector:0")
    generation = life.begin_start("created")
    assert life.started(generation) and life.state is UnitState.RUNNING
    assert not life.health_failed()  # one slow answer is not enough
    life.health_ok()
    assert not life.health_failed()
    assert life.health_failed()  # two in a row: replace it
    delay = life.failed("hung", "detector:0 unhealthy (hung); replaced")
    assert delay is not None and life.state is UnitState.BACKING_OFF and life.cause == "hung"
    life.begin_start("replaced", "Ray restarts it")
    assert life.started(life.generation)
    snap = life.snapshot()
    assert snap["state"] == "running" and snap["restarts"] == 1
    assert [t["to"] for t in snap["history"]] == ["starting", "running", "backing_off", "starting", "running"]


def test_is_hung() -> None:
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
