"""The zone state machine on scripted tracks: enter/dwell/exit, debounce, crossings, ordering, timeouts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from heldar.perception.detections import Detection, DetectionBatch
from heldar.zones.machine import ZoneMachine
from heldar.zones.model import OpenVisit, ZoneEvent, ZoneSpec

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REGION = ZoneSpec("zone_r", "cam", "door", "region", ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)),
                  dwell_seconds=3.0, severity="warning")  # fmt: skip
LINE = ZoneSpec("zone_l", "cam", "gate", "line", ((0.5, 0.0), (0.5, 1.0)))


def box_at(x: float, y: float) -> tuple[float, float, float, float]:
    """A 0.1 x 0.2 box whose bottom-centre is (x, y)."""
    return (x - 0.05, y - 0.2, 0.1, 0.2)


def frame(i: int, *tracks: tuple[str, float, float], label: str = "person", cam: str = "cam") -> DetectionBatch:
    dets = tuple(Detection(label, 0.9, box_at(x, y), track_id=t) for t, x, y in tracks)
    return DetectionBatch(cam, "detect", f"f{i}", T0 + timedelta(seconds=i), dets)


def walk(xs: list[float], y: float = 0.5, track: str = "t1") -> list[DetectionBatch]:
    return [frame(i, (track, x, y)) for i, x in enumerate(xs)]


def run(machine: ZoneMachine, batches: list[DetectionBatch]) -> list[ZoneEvent]:
    out: list[ZoneEvent] = []
    for b in batches:
        out.extend(machine.observe(b) or [])
    return out


def machine_with(*zones: ZoneSpec, timeout: float = 120.0) -> ZoneMachine:
    m = ZoneMachine(track_timeout_s=timeout)
    m.set_zones("cam", zones)
    return m


def kinds(events: list[ZoneEvent]) -> list[str]:
    return [e.event_type for e in events]


# outside x2, inside x6 (1 s apart), outside x3
SCRIPT = [0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9, 0.9]


def test_scripted_track_gives_exactly_enter_dwell_exit() -> None:
    m = machine_with(REGION)
    events = run(m, walk(SCRIPT))
    assert kinds(events) == ["enter", "dwell", "exit"]
    enter, dwell, exit_ = events
    assert enter.timestamp == T0 + timedelta(seconds=2)  # the first inside frame, confirmed by the second
    assert dwell.timestamp == T0 + timedelta(seconds=5) and dwell.dwell_seconds == 3.0
    assert exit_.timestamp == T0 + timedelta(seconds=8) and exit_.dwell_seconds == 6.0
    assert {e.severity for e in events} == {"warning"} and {e.zone_name for e in events} == {"door"}
    assert m.occupancy("cam") == {"zone_r": 0}


def test_one_frame_blips_are_debounced() -> None:
    m = machine_with(REGION)
    # one inside frame then out: no enter; inside long, one outside blip: no exit
    xs = [0.1, 0.5, 0.1, 0.1, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5]
    assert kinds(run(m, walk(xs))) == ["enter", "dwell"]
    assert m.occupancy("cam") == {"zone_r": 1}


def test_dwell_once_per_visit_and_again_on_a_new_visit() -> None:
    m = machine_with(REGION)
    xs = [0.5] * 8 + [0.9] * 2 + [0.5] * 6
    assert kinds(run(m, walk(xs))) == ["enter", "dwell", "exit", "enter", "dwell"]


def test_bottom_centre_is_the_tested_point() -> None:
    m = machine_with(REGION)
    # the box covers the zone but its bottom-centre is below it: never inside
    big = tuple(DetectionBatch("cam", "d", f"f{i}", T0 + timedelta(seconds=i),
                               (Detection("person", 0.9, (0.3, 0.3, 0.4, 0.5), track_id="t"),))
                for i in range(5))  # fmt: skip
    assert run(m, list(big)) == []


def test_label_filter_and_confidence_floor() -> None:
    cars = ZoneSpec("zone_c", "cam", "bay", "region", REGION.points, labels=frozenset({"car"}))
    m = machine_with(cars)
    assert run(m, [frame(i, ("t", 0.5, 0.5), label="person") for i in range(4)]) == []
    assert kinds(run(m, [frame(i, ("t2", 0.5, 0.5), label="car") for i in range(4, 8)])) == ["enter"]
    weak = [DetectionBatch("cam", "d", f"w{i}", T0 + timedelta(seconds=10 + i),
                           (Detection("car", 0.3, box_at(0.5, 0.5), track_id="t3"),)) for i in range(4)]  # fmt: skip
    assert run(m, weak) == []


def test_line_crossings_both_ways_and_direction_filter() -> None:
    m = machine_with(LINE)
    events = run(m, walk([0.2, 0.4, 0.6, 0.8, 0.6, 0.3]))
    # A→B points down the image; x < 0.5 is on the right of A→B seen from A, the positive side
    assert kinds(events) == ["cross_ab", "cross_ba"]
    first, second = events
    assert first.timestamp == T0 + timedelta(seconds=2) and second.timestamp == T0 + timedelta(seconds=5)
    # landing exactly on the line and leaving to the far side counts once
    m2 = machine_with(LINE)
    assert len(run(m2, walk([0.3, 0.5, 0.5, 0.7]))) == 1
    # passing beyond the ends of a short line is no crossing
    short = ZoneSpec("zone_s", "cam", "s", "line", ((0.5, 0.0), (0.5, 0.3)))
    assert run(machine_with(short), walk([0.2, 0.8])) == []
    only_one_way = ZoneSpec("zone_d", "cam", "d", "line", LINE.points, direction="ab")
    directed = run(machine_with(only_one_way), walk([0.2, 0.8, 0.2, 0.8]))
    assert kinds(directed) == ["cross_ab", "cross_ab"]


def test_duplicate_and_out_of_order_batches_produce_no_duplicates() -> None:
    batches = walk(SCRIPT)
    reference = run(machine_with(REGION), batches)
    m = machine_with(REGION)
    noisy: list[DetectionBatch] = []
    rng = random.Random(7)
    for i, b in enumerate(batches):
        noisy.append(b)
        noisy.append(b)  # duplicate
        if i > 2:
            noisy.append(batches[rng.randrange(0, i)])  # a late, older batch
    events = run(m, noisy)
    assert kinds(events) == ["enter", "dwell", "exit"] and events == reference
    assert m.ignored_batches == len(noisy) - len(batches)


def test_batched_or_replayed_detections_give_the_same_events() -> None:
    """Time is the frame time: processing the same frames later (all at once) changes nothing."""
    a = run(machine_with(REGION), walk(SCRIPT))
    b = run(machine_with(REGION), walk(SCRIPT))
    assert a == b


def test_unseen_track_gets_a_synthetic_exit_on_its_own_camera() -> None:
    m = ZoneMachine(track_timeout_s=10)
    m.set_zones("cam", [REGION])
    other = ZoneSpec("zone_o", "cam2", "o", "region", REGION.points)
    m.set_zones("cam2", [other])
    assert kinds(run(m, walk([0.5, 0.5, 0.5]))) == ["enter"]
    assert kinds(run(m, [frame(i, ("x", 0.5, 0.5), cam="cam2") for i in range(3)])) == ["enter"]
    # cam2 moves on in time: only cam2's own stale track may expire
    later_cam2 = [frame(100 + i, ("y", 0.9, 0.9), cam="cam2") for i in range(2)]
    exits = run(m, later_cam2)
    assert [(e.camera_id, e.event_type, e.synthetic) for e in exits] == [("cam2", "exit", True)]
    assert exits[0].timestamp == T0 + timedelta(seconds=2)  # its last sighting
    assert m.occupancy("cam") == {"zone_r": 1}
    # cam's own clock moves: its track expires, stamped with its last sighting
    exits = run(m, [frame(50, ("z", 0.1, 0.1))])
    assert [(e.camera_id, e.track_id, e.synthetic) for e in exits] == [("cam", "t1", True)]
    assert exits[0].timestamp == T0 + timedelta(seconds=2)


def test_restore_resumes_open_visits_without_a_second_enter() -> None:
    first = machine_with(REGION)
    batches = walk(SCRIPT)
    before = run(first, batches[:6])
    assert kinds(before) == ["enter", "dwell"]
    resumed = machine_with(REGION)
    resumed.restore("cam", batches[5].captured_at,
                    [OpenVisit("zone_r", "t1", before[0].timestamp, "person", dwell_fired=True)])  # fmt: skip
    after = run(resumed, batches)  # a full replay: frames up to the watermark are ignored
    assert kinds(after) == ["exit"] and after[0].timestamp == T0 + timedelta(seconds=8)


def test_removing_a_zone_drops_its_state() -> None:
    m = machine_with(REGION, LINE)
    run(m, walk([0.5, 0.5]))
    m.set_zones("cam", [LINE])
    assert m.occupancy("cam") == {} and all(
        k[0] == "zone_l" for st in m.camera("cam").streams.values() for k in st.tracks
    )


def test_detections_without_track_or_box_are_ignored() -> None:
    m = machine_with(REGION)
    batches = [DetectionBatch("cam", "d", f"f{i}", T0 + timedelta(seconds=i),
                              (Detection("person", 0.9, None, track_id="t"),
                               Detection("person", 0.9, box_at(0.5, 0.5), track_id=None)))
               for i in range(4)]  # fmt: skip
    assert run(m, batches) == []


def test_consumer_factory_reads_the_track_timeout() -> None:
    from types import SimpleNamespace

    from heldar.zones.engine import zone_consumer

    engine = zone_consumer(SimpleNamespace(pool=object(), settings={"zone_track_timeout_s": 7}))
    assert engine.name == "zones" and engine.machine.track_timeout == timedelta(seconds=7)


# --- wave 2: zone time per stream, exits without detections, bounded tracks ------------------------


def kernel_frame(i: int, task: str, *tracks: tuple[str, float, float], label: str = "person") -> DetectionBatch:
    """A kernel batch of task ``task`` (frame ids ``k:sampler:<task>:<ms>``, as the detector writes them)."""
    at = T0 + timedelta(seconds=i)
    dets = tuple(Detection(label, 0.9, box_at(x, y), track_id=t) for t, x, y in tracks)
    return DetectionBatch("cam", label, f"k:sampler:{task}:{int(at.timestamp() * 1000)}", at, dets)


def test_two_tasks_on_one_camera_each_count() -> None:
    """Motion and person batches share every captured_at: the second of each pair used to be dropped."""
    region = ZoneSpec("zone_r", "cam", "door", "region", REGION.points, dwell_seconds=3.0, labels=frozenset({"person"}))
    m = machine_with(region)
    events: list[ZoneEvent] = []
    for i, x in enumerate(SCRIPT):
        motion = m.observe(kernel_frame(i, "ai_motion", ("m1", x, 0.5), label="motion"))
        person = m.observe(kernel_frame(i, "ai_person", ("t1", x, 0.5)))
        assert motion is not None and person is not None  # neither is ignored as "at the watermark"
        events.extend(motion + person)
    assert kinds(events) == ["enter", "dwell", "exit"]
    assert {e.stream for e in events} == {"k:ai_person"}
    assert m.ignored_batches == 0


def test_a_replayed_batch_is_still_ignored_per_stream() -> None:
    m = machine_with(REGION)
    batches = [kernel_frame(i, "ai_a", ("t1", x, 0.5)) for i, x in enumerate(SCRIPT)]
    first = run(m, batches)
    assert kinds(first) == ["enter", "dwell", "exit"]
    assert run(m, batches) == [] and m.ignored_batches == len(batches)


def test_tick_exits_a_track_that_left_the_frame_without_another_detection() -> None:
    m = machine_with(REGION, timeout=5.0)
    wall = 1_000_000.0
    for i, x in enumerate([0.5, 0.5, 0.5]):
        m.observe(frame(i, ("t1", x, 0.5)), received_at=wall + i)
    assert m.occupancy("cam") == {"zone_r": 1}
    assert m.tick(wall + 2 + 4.9) == {}  # not yet: last seen 4.9 s ago (frame time runs on at wall speed)
    out = m.tick(wall + 2 + 5.1)
    assert [(e.event_type, e.synthetic, e.timestamp) for e in out["cam"]] == [("exit", True, T0 + timedelta(seconds=2))]
    assert m.occupancy("cam") == {"zone_r": 0}
    assert m.tick(wall + 100) == {}


def test_tracks_per_camera_are_bounded() -> None:
    m = ZoneMachine(track_timeout_s=3600, max_tracks=50)
    m.set_zones("cam", [REGION])
    for i in range(10):
        dets = tuple((f"t{i}-{k}", 0.5, 0.5) for k in range(20))
        m.observe(frame(i, *dets))
    assert m.camera("cam").track_count() <= 50
    assert m.evicted_tracks >= 150


def test_a_legacy_camera_watermark_is_a_floor_for_new_streams() -> None:
    m = machine_with(REGION)
    m.restore("cam", {}, [], floor=T0 + timedelta(seconds=5))
    assert m.observe(frame(3, ("t1", 0.5, 0.5))) is None  # older than the floor
    assert m.observe(frame(6, ("t1", 0.5, 0.5))) == []


def test_evidence_files_are_stored_and_resolved_only_by_their_own_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from heldar.zones.evidence import EvidenceError, resolve_evidence, store_evidence

    url = store_evidence(tmp_path, "cam-1", b"\xff\xd8jpeg")
    name = url.rsplit("/", 1)[1]
    assert url.startswith("/media/evidence/cam-1/ev_") and resolve_evidence(tmp_path, "cam-1", name).read_bytes()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for camera, bad in (("cam-1", "../secret.jpg"), ("..", name), ("cam-1", "ev_zz.jpg"), ("cam-2", name)):
        with pytest.raises(EvidenceError):
            resolve_evidence(tmp_path, camera, bad)


def test_old_evidence_files_are_pruned_and_nothing_else(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    from datetime import UTC, datetime, timedelta

    from heldar.zones.evidence import prune_evidence, store_evidence

    old_url = store_evidence(tmp_path, "cam1", b"\xff\xd8old")
    new_url = store_evidence(tmp_path, "cam1", b"\xff\xd8new")
    old = tmp_path / "cam1" / old_url.rsplit("/", 1)[1]
    new = tmp_path / "cam1" / new_url.rsplit("/", 1)[1]
    stranger = tmp_path / "cam1" / "notes.txt"
    stranger.write_text("keep me")
    week_ago = (datetime.now(UTC) - timedelta(days=8)).timestamp()
    os.utime(old, (week_ago, week_ago))
    os.utime(stranger, (week_ago, week_ago))
    assert prune_evidence(tmp_path, datetime.now(UTC) - timedelta(days=7)) == 1
    assert not old.exists() and new.exists() and stranger.exists()
    assert prune_evidence(tmp_path / "missing", datetime.now(UTC)) == 0
