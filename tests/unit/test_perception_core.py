"""Pure perception logic: the fps budget allocator, tickets, sharding, frame window, cadence, tracker, analyzers."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import numpy as np
import pytest

from heldar.errors import BadRequest
from heldar.fakecam.scene import render_frame
from heldar.perception.analyzers import create_analyzer, known_analyzers
from heldar.perception.budget import MIN_WIDTH, UnitRequest, allocate, total_cost, width_ladder
from heldar.perception.detections import Detection
from heldar.perception.ingest import check_bbox, check_event_type, prepare_worker_batch
from heldar.perception.sampling import Cadence, FrameWindow, StreamClock
from heldar.perception.sharding import shard
from heldar.perception.tickets import TicketError, mint_ticket, verify_ticket
from heldar.perception.tracker import IouTracker, MotionTracker


def units(n: int, fps: float = 5, width: int = 1280) -> list[UnitRequest]:
    return [UnitRequest(f"cam-{i:03d}", "sub", fps, width) for i in range(n)]


def test_upstream_example_ten_units() -> None:
    grants = allocate(units(10), 40)
    assert [g.fps for g in grants] == [5] * 7 + [4, 0.5, 0.5]
    assert all(g.width == 1280 for g in grants) and total_cost(grants) <= 40


def test_one_camera_gets_what_it_asks_within_budget() -> None:
    assert allocate(units(1, fps=10), 40)[0].fps == 10
    assert allocate(units(1, fps=10), 3)[0].fps == 3
    low = allocate([UnitRequest("c", "sub", 0.1, 640)], 40)[0]
    assert low.fps == 0.1 and low.state == "granted"  # never more than asked


def test_width_steps_down_before_a_unit_is_dropped() -> None:
    grants = allocate(units(10, fps=5, width=1280), 2.0)
    assert all(g.state == "degraded" and g.fps == 0.5 for g in grants)  # nobody dropped: widths stepped down
    widths = [g.width for g in grants]
    assert widths == sorted(widths, reverse=True) and widths[-1] == 640 and total_cost(grants) <= 2.0 + 1e-9
    assert width_ladder(1280) == [1280, 960, 640] and width_ladder(400) == [400] and width_ladder(200) == [200]
    assert width_ladder(640) == [640, 480, 320] and min(width_ladder(700)) >= MIN_WIDTH


def test_priority_decides_who_is_shed() -> None:
    reqs = [UnitRequest("low", "sub", 5, 640, priority=10), UnitRequest("high", "sub", 5, 640, priority=500)]
    grants = {g.camera_id: g for g in allocate(reqs, 0.2)}
    assert grants["high"].fps == 0.5 and grants["high"].width == 320
    assert grants["low"].state == "budget_exhausted" and grants["low"].fps == 0


def test_budget_below_the_floor_sheds_everything() -> None:
    grants = allocate(units(3), 0.1)
    assert all(g.state == "budget_exhausted" and g.fps == 0 for g in grants) and total_cost(grants) == 0
    assert all(g.state == "budget_exhausted" for g in allocate(units(3), 0))
    assert allocate([], 40) == []


@pytest.mark.parametrize("seed", range(20))
def test_properties_hundreds_of_random_units(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(1, 400)
    reqs = [UnitRequest(f"c{i}", rng.choice(["sub", "main"]), round(rng.uniform(0.1, 30), 1),
                        rng.randrange(160, 3841), rng.choice([1, 100, 100, 1000])) for i in range(n)]  # fmt: skip
    budget = rng.uniform(0, 200)
    grants = allocate(reqs, budget)
    assert len(grants) == len(reqs) and total_cost(grants) <= budget + 1e-6
    for g in grants:
        assert g.fps <= g.requested_fps + 1e-9 and g.width <= g.requested_width
        assert (g.fps == 0) == (g.state == "budget_exhausted")
    shed = [g for g in grants if g.state == "budget_exhausted"]
    if shed:  # whoever was shed could not have been admitted more cheaply than the last admitted unit
        assert len(grants) - len(shed) <= budget / 0.0125 + 1
    # service order is priority first: once a unit is shed, no later unit gets more than the floor
    states = [g.state for g in grants]
    if "budget_exhausted" in states:
        first = states.index("budget_exhausted")
        assert all(s != "granted" for s in states[first:])


def test_tickets_bind_credential_camera_and_expiry() -> None:
    secret = b"k" * 32
    t = mint_ticket(secret, key_id="key_a", camera_id="cam", task_id="ai_1", captured_ms=1234, now=1000, ttl_s=120)
    claims = verify_ticket(secret, t, key_id="key_a", camera_id="cam", now=1100)
    assert claims.frame_id == "ai_1:1234" and claims.expires_at == 1120
    for kwargs in ({"key_id": "key_b", "camera_id": "cam", "now": 1100},
                   {"key_id": "key_a", "camera_id": "cam2", "now": 1100},
                   {"key_id": "key_a", "camera_id": "cam", "now": 1121}):  # fmt: skip
        with pytest.raises(TicketError):
            verify_ticket(secret, t, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TicketError):
        verify_ticket(b"other" * 8, t, key_id="key_a", camera_id="cam", now=1100)
    for bad in ("", "f1.x", t.replace("1234", "1235"), t + "x"):
        with pytest.raises(TicketError):
            verify_ticket(secret, bad, key_id="key_a", camera_id="cam", now=1100)


def test_shard_partitions_and_unknown_worker_gets_all() -> None:
    items = list(range(10))
    parts = [shard(items, ["b", "a", "c"], w) for w in ("a", "b", "c")]
    assert sorted(x for p in parts for x in p) == items and parts[0] == [0, 3, 6, 9]
    assert shard(items, ["a"], "zzz") == items and shard(items, [], None) == items


def test_frame_window_drops_oldest_and_stays_bounded() -> None:
    w: FrameWindow[int] = FrameWindow(max_in_flight=2, max_pending=1)
    submitted = [x for i in range(100) for x in w.offer(i)]
    assert submitted == [0, 1] and w.in_flight == 2 and list(w.pending) == [99] and w.dropped == 97
    assert w.done() == [99] and w.done() == [] and w.in_flight == 1


def test_cadence_holds_the_rate_and_does_not_burst_after_a_stall() -> None:
    c = Cadence(4)
    kept = [t / 15 for t in range(150) if c.due(t / 15)]  # 10 s of 15 fps
    assert abs(len(kept) - 40) <= 1
    assert sum(c.due(100 + t / 15) for t in range(3)) == 1  # after a 90 s stall: one frame, no catch-up burst


def test_tracker_keeps_ids_for_moving_boxes() -> None:
    tracker = IouTracker()
    ids = []
    for step in range(10):
        dets = [Detection("person", 0.9, (0.1 + step * 0.02, 0.2, 0.1, 0.3)),
                Detection("person", 0.9, (0.7 - step * 0.02, 0.2, 0.1, 0.3))]  # fmt: skip
        ids.append([d.track_id for d in tracker.update(dets)])
    assert all(pair == ids[0] for pair in ids) and len(set(ids[0])) == 2
    for _ in range(tracker.max_missed + 1):
        tracker.update([])
    assert tracker.update([Detection("person", 0.9, (0.1, 0.2, 0.1, 0.3))])[0].track_id not in ids[0]


def test_motion_tracker_follows_a_fast_object_at_a_low_frame_rate() -> None:
    """0.5 fps, an object moving 0.27 of the frame per frame (two of its widths): the IoU tracker gives it a new
    id every frame; the motion tracker keeps one, and a second object moving the other way keeps its own."""

    def frames(tracker: object, t_of: object) -> list[list[str | None]]:
        out = []
        for step in range(4):
            t = step * 2.0
            dets = [Detection("person", 0.9, (0.05 + step * 0.27, 0.2, 0.1, 0.5)),
                    Detection("person", 0.9, (0.85 - step * 0.27, 0.3, 0.1, 0.5))]  # fmt: skip
            tracked = tracker.update(dets, t) if t_of else tracker.update(dets)  # type: ignore[attr-defined]
            out.append([d.track_id for d in tracked])
        return out

    motion = frames(MotionTracker(), True)
    assert all(pair == motion[0] for pair in motion) and len(set(motion[0])) == 2, motion
    iou_ids = frames(IouTracker(), False)
    assert len({i for pair in iou_ids for i in pair}) > 2  # today's tracker loses them


def test_motion_tracker_drops_a_track_after_its_age() -> None:
    tracker = MotionTracker(max_missed=2, max_age_s=1.0)
    first = tracker.update([Detection("person", 0.9, (0.1, 0.2, 0.1, 0.3))], 0.0)[0].track_id
    for i in range(1, 4):
        tracker.update([], float(i))
    assert tracker.update([Detection("person", 0.9, (0.1, 0.2, 0.1, 0.3))], 4.0)[0].track_id != first


def test_analyzers_find_the_scene_objects() -> None:
    assert {"motion", "person", "delay"} <= set(known_analyzers())
    person, motion = create_analyzer("person"), create_analyzer("motion")
    now = datetime.now(UTC)
    found_person, found_motion = 0, 0
    for i in range(12):
        frame = render_frame(640, 360, i * 0.4, 8.0)
        found_person += bool(person.analyze(frame, now))
        found_motion += bool(motion.analyze(frame, now))
    assert found_person >= 6 and found_motion >= 6
    empty = np.full((360, 640, 3), 128, np.uint8)
    assert person.analyze(empty, now) == []
    assert create_analyzer("no_such_model").analyze(empty, now) == []


def test_worker_batch_rules() -> None:
    assert check_bbox([0, 0, 1, 1]) == (0, 0, 1, 1) and check_bbox(None) is None
    for bad in ([0.5, 0.5, 0.6, 0.1], [-0.1, 0, 0.1, 0.1], [0, 0, 0.1]):
        with pytest.raises(BadRequest):
            check_bbox(bad)
    for bad in ("zone_enter", "Bad", "x" * 65):
        with pytest.raises(BadRequest):
            check_event_type(bad)
    batch = prepare_worker_batch(camera_id="c", task_type="t", frame_id="f", captured_at=datetime.now(UTC),
                                 detections=[Detection("a", 1, None, attributes={"source": "x", "_prov": 1, "k": 2})],
                                 key_id="key_1", task_id=None, worker_id="w")  # fmt: skip
    assert batch.frame_id == "w:f" and batch.detections[0].attributes == {
        "k": 2, "source": "worker", "_prov": {"key": "key_1", "task": None, "worker": "w"}}  # fmt: skip


def test_frame_reader_error_never_carries_the_camera_password() -> None:
    """PyAV names the URL in its errors; the reader keeps (and logs, and reports) a masked one."""
    import time as _time

    from heldar.perception.sampling import FrameReader

    reader = FrameReader("rtsp://admin:Secr3tPw@127.0.0.1:9/x", 1.0, 320, lambda _frame: None, timeout_s=1.0)
    reader.start()
    try:
        deadline = _time.monotonic() + 10
        while reader.last_error is None and _time.monotonic() < deadline:
            _time.sleep(0.05)
    finally:
        reader.stop()
    assert reader.last_error is not None and "Connection refused" in reader.last_error
    assert "Secr3tPw" not in reader.last_error and "admin:***@" in reader.last_error


# --- wave 2: bounded input ---------------------------------------------------------------------------


def test_timestamps_far_ahead_or_beyond_retention_are_refused_with_why() -> None:
    from datetime import UTC, datetime, timedelta

    from heldar.errors import BadRequest
    from heldar.perception.ingest import check_captured_at

    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    check_captured_at(now + timedelta(seconds=59), now, 3600)
    check_captured_at(now - timedelta(seconds=3599), now, 3600)
    with pytest.raises(BadRequest, match="ahead of the server clock"):
        check_captured_at(datetime(9999, 12, 31, tzinfo=UTC), now, 3600)
    with pytest.raises(BadRequest, match="retention horizon"):
        check_captured_at(now - timedelta(hours=2), now, 3600)


@pytest.mark.parametrize(
    "event_type", ["zone_enter", "camera_offline", "recording_gap_filled", "recorder_error", "sampler_offline",
                   "disk_full", "retention_swept", "anr_failed", "ingest_unleased", "test"],
)  # fmt: skip
def test_worker_event_types_may_not_use_kernel_prefixes(event_type: str) -> None:
    from heldar.errors import BadRequest
    from heldar.perception.ingest import check_event_type

    with pytest.raises(BadRequest):
        check_event_type(event_type)
    check_event_type("loitering")


def test_task_config_values_are_bounded() -> None:
    from heldar.perception.analyzers import TaskConfigError, create_analyzer, validate_task_config

    validate_task_config("delay", {"delay_s": 1.5})
    for bad in ({"delay_s": 1e9}, {"delay_s": "x"}, {"delay_s": float("nan")}):
        with pytest.raises(TaskConfigError, match="delay_s"):
            validate_task_config("delay", bad)
    with pytest.raises(TaskConfigError, match="work_width"):
        validate_task_config("person", {"work_width": 10**6})
    with pytest.raises(TaskConfigError, match="bytes"):
        validate_task_config("custom", {"blob": "x" * 20000})
    assert create_analyzer("delay", {"delay_s": 1e9}).delay_s == 5.0  # type: ignore[attr-defined]


def test_a_starved_decoder_delivering_bursts_still_samples_the_stream_at_the_granted_rate() -> None:
    """A 15 fps stream decoded in bursts (each second's frames arrive at once, as under CPU starvation):
    on wall-clock arrival times one frame per burst is due (1 fps instead of 4); on stream time the grid
    holds, and the kept frames carry capture times a period apart, not the burst's instant."""
    # (stream time, wall arrival): the first second on time, then each second's frames in one burst
    frames = [(i / 15, 1000.0 + (i / 15 if i < 15 else i // 15 + 1)) for i in range(150)]
    on_wall = Cadence(4)
    assert sum(on_wall.due(wall) for _, wall in frames) == 4 + 9  # the fault: one frame per burst
    cadence, clock = Cadence(4), StreamClock()
    kept = [t for stream_t, wall in frames if cadence.due(t := clock.captured_at(stream_t, wall))]
    assert abs(len(kept) - 40) <= 1
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert all(abs(g - 0.25) < 0.07 for g in gaps), gaps  # 15 fps frames: the nearest one to each slot


def test_stream_clock_never_runs_ahead_and_re_anchors_after_a_jump() -> None:
    clock = StreamClock(max_skew_s=2.0)
    assert clock.captured_at(10.0, 500.0) == 500.0
    assert clock.captured_at(10.5, 500.7) == 500.5  # a frame delivered 0.2 s late keeps its capture time
    assert clock.captured_at(11.0, 500.9) == 500.9  # never after it arrived: the anchor moves back
    assert clock.captured_at(11.5, 501.9) == 501.4
    assert clock.captured_at(90.0, 502.0) == 502.0  # a timestamp jump re-anchors
    assert clock.captured_at(91.0, 505.5) == 505.5  # so does a frame more than max_skew_s late
    assert clock.captured_at(None, 502.0) == 502.0
    cadence = Cadence(4)
    assert cadence.due(100.0) and cadence.due(50.0)  # time going backwards starts a new grid
