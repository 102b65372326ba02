"""The unit lifecycle and the recorder version digests, without Ray."""

from __future__ import annotations

import pytest

from heldar.models.cameras import Camera
from heldar.recorder_policy import RestartLimiter
from heldar.supervision.unit import Transition, TransitionError, UnitLifecycle, UnitState
from heldar.supervision.version import live_version, recorder_version


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kw) -> tuple[UnitLifecycle, list[Transition]]:  # type: ignore[no-untyped-def]
    seen: list[Transition] = []
    return UnitLifecycle("cam", clock=clock, on_transition=seen.append, **kw), seen


def test_start_run_fail_back_off_and_restart_with_causes() -> None:
    clock = Clock()
    unit, seen = make(clock)
    gen = unit.begin_start()
    assert unit.state is UnitState.STARTING
    assert unit.started(gen)
    delay = unit.failed("died", "camera actor died", gen)
    assert delay == 1.0 and unit.state is UnitState.BACKING_OFF
    assert not unit.restart_due()
    clock.now += 1.0
    assert unit.restart_due()
    gen2 = unit.begin_start("restart", "restarting after died")
    assert gen2 == gen + 1 and unit.started(gen2)
    assert [(t.source, t.target, t.cause) for t in seen] == [
        (UnitState.PENDING, UnitState.STARTING, "requested"),
        (UnitState.STARTING, UnitState.RUNNING, "started"),
        (UnitState.RUNNING, UnitState.BACKING_OFF, "died"),
        (UnitState.BACKING_OFF, UnitState.STARTING, "restart"),
        (UnitState.STARTING, UnitState.RUNNING, "started"),
    ]
    assert "restart #1 in 1.0s" in seen[2].message


def test_a_death_reported_twice_is_counted_once() -> None:
    unit, _ = make(Clock())
    gen = unit.begin_start()
    unit.started(gen)
    assert unit.failed("died", "watch saw it die", gen) is not None
    assert unit.failed("hung", "health check timed out", gen) is None  # same death, second reporter
    assert unit.limiter.restarts_total == 1


def test_reports_about_an_older_generation_are_ignored() -> None:
    unit, _ = make(Clock())
    old = unit.begin_start()
    unit.started(old)
    unit.failed("died", "x", old)
    new = unit.begin_start()
    assert unit.failed("died", "late report of the old actor", old) is None
    assert unit.state is UnitState.STARTING
    assert not unit.started(old)  # a stale start completion does not flip the state either
    assert unit.started(new)


def test_repeated_failures_back_off_exponentially_and_show_a_crash_loop() -> None:
    clock = Clock()
    unit, _ = make(clock)
    delays = []
    for _ in range(5):
        gen = unit.begin_start()
        delays.append(unit.failed("start_failed", "did not start", gen))
        clock.now += 1
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert unit.state is UnitState.CRASH_LOOP
    assert unit.message.startswith("crash loop:")
    assert unit.wants_running  # a crash loop still retries


def test_health_needs_consecutive_failures_before_a_restart() -> None:
    unit, _ = make(Clock(), health_failures_to_restart=3)
    gen = unit.begin_start()
    unit.started(gen)
    assert not unit.health_failed()
    assert not unit.health_failed()
    unit.health_ok()  # one good answer in between resets the count
    assert not unit.health_failed()
    assert not unit.health_failed()
    assert unit.health_failed()


def test_health_failures_do_not_count_while_not_running() -> None:
    unit, _ = make(Clock(), health_failures_to_restart=1)
    unit.begin_start()
    assert not unit.health_failed()  # still starting


def test_healthy_for_long_enough_forgets_the_streak() -> None:
    clock = Clock()
    unit, _ = make(clock, healthy_after_s=60)
    for _ in range(3):
        gen = unit.begin_start()
        unit.failed("died", "x", gen)
    gen = unit.begin_start()
    unit.started(gen)
    clock.now += 61
    unit.health_ok()
    assert unit.limiter.consecutive_failures == 0
    assert unit.failed("died", "x", gen) == 1.0


def test_stop_makes_in_flight_work_stale_and_is_never_restarted() -> None:
    unit, _ = make(Clock())
    gen = unit.begin_start()
    unit.started(gen)
    unit.stop("removed", "camera deleted")
    assert unit.failed("died", "its death after the stop", gen) is None
    assert not unit.wants_running
    unit.stopped()
    assert unit.state is UnitState.STOPPED
    with pytest.raises(TransitionError):
        unit.begin_start()


def test_cannot_start_twice() -> None:
    unit, _ = make(Clock())
    unit.begin_start()
    with pytest.raises(TransitionError):
        unit.begin_start()


def test_give_up_then_start_again() -> None:
    unit, _ = make(Clock())
    unit.begin_start()
    unit.give_up("config", "camera row is gone")
    assert unit.state is UnitState.FAILED and not unit.wants_running
    unit.begin_start()
    assert unit.state is UnitState.STARTING


def test_a_listener_that_raises_does_not_break_the_machine() -> None:
    def boom(_: Transition) -> None:
        raise RuntimeError("listener bug")

    unit = UnitLifecycle("cam", on_transition=boom, limiter=RestartLimiter())
    gen = unit.begin_start()
    assert unit.started(gen)


def test_snapshot_is_plain_data() -> None:
    unit, _ = make(Clock())
    unit.begin_start()
    snap = unit.snapshot()
    assert snap["state"] == "starting" and snap["history"][-1]["to"] == "starting"


def _camera(**kw) -> Camera:  # type: ignore[no-untyped-def]
    return Camera(id="c", name="C", main_stream_url="rtsp://u:p@10.0.0.1/s", **kw)


@pytest.mark.parametrize(
    "change",
    [{"name": "Renamed"}, {"priority": 5}, {"retention_hours": 99}, {"anr_enabled": True},
     {"pre_roll_seconds": 3}, {"post_roll_seconds": 4}, {"anr_replay_url_template": "rtsp://x/{start}"}],
)  # fmt: skip
def test_live_edits_do_not_change_the_recorder_version(change: dict) -> None:
    base = _camera()
    edited = base.model_copy(update=change)
    assert recorder_version(edited) == recorder_version(base)
    assert live_version(edited) != live_version(base)


@pytest.mark.parametrize(
    "change",
    [{"main_stream_url": "rtsp://u:p@10.0.0.2/s"}, {"rtsp_transport": "udp"},
     {"record_stream": "sub", "sub_stream_url": "rtsp://u:p@10.0.0.1/sub"},
     {"segment_seconds": 10}, {"record_audio": True}, {"record_mode": "event"}],
)  # fmt: skip
def test_recorder_inputs_change_the_recorder_version(change: dict) -> None:
    base = _camera()
    assert recorder_version(base.model_copy(update=change)) != recorder_version(base)


def test_a_new_password_restarts_a_vendor_camera() -> None:
    base = Camera(id="c", name="C", vendor="hikvision", address="10.0.0.1", username="admin", password="a")
    assert recorder_version(base.model_copy(update={"password": "b"})) != recorder_version(base)


def test_connection_budget_never_exceeds_the_total() -> None:
    from heldar.supervision.budget import MIN_BUDGET, split_connection_budget

    for total in range(MIN_BUDGET, 40):
        for wanted, ingest in ((1, 1), (2, 2), (4, 8), (16, 1)):
            budget = split_connection_budget(total, wanted, ingest)
            assert budget.used <= total and budget.per_writer >= 1 and 1 <= budget.writers <= wanted
    with pytest.raises(ValueError):
        split_connection_budget(MIN_BUDGET - 1, 2)


def test_writer_choice_is_stable_and_rotates_on_retry() -> None:
    from heldar.supervision.budget import writer_for

    first = writer_for("front-door", 3)
    assert first == writer_for("front-door", 3)
    assert {writer_for("front-door", 3, attempt) for attempt in range(3)} == {0, 1, 2}


def test_placement_balances_cameras_over_live_eligible_nodes() -> None:
    from heldar.supervision.placement import choose_node, eligible_nodes

    nodes = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}, {"NodeID": "c", "Alive": False}]
    eligible = eligible_nodes(nodes)
    assert eligible == ["a", "b"]
    placed: list[str | None] = []
    for _ in range(5):
        placed.append(choose_node(eligible, placed))
    assert sorted(placed) == ["a", "a", "a", "b", "b"]
    assert choose_node(eligible, ["a", "a", "c", "c", "c"]) == "b"  # cameras on a dead node do not count
    assert choose_node([], []) is None
    tagged = [*nodes, {"NodeID": "d", "Alive": True, "Resources": {"heldar_recorder": 1}}]
    assert eligible_nodes(tagged) == ["d"]
