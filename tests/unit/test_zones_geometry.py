"""Zone geometry: what is refused (and why), point-in-polygon, the ground point."""

from __future__ import annotations

import math

import pytest

from heldar.zones.geometry import GeometryError, ground_point, point_in_polygon, validate_geometry
from heldar.zones.model import ZoneConfigError, validate_config, validate_labels

SQUARE = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]


def test_valid_region_and_line() -> None:
    assert validate_geometry("region", SQUARE) == [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]
    assert validate_geometry("line", [[0, 0.5], [1, 0.5]]) == [(0.0, 0.5), (1.0, 0.5)]
    concave = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.4], [0.1, 0.9]]
    assert len(validate_geometry("region", concave)) == 5
    assert len(validate_geometry("region", [[0.5 + 0.4 * math.cos(a / 512 * 2 * math.pi),
                                             0.5 + 0.4 * math.sin(a / 512 * 2 * math.pi)]
                                            for a in range(512)])) == 512  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "polygon", "reason"),
    [
        ("region", [[0.2, 0.2], [0.8, 0.8], [0.8, 0.2], [0.3, 0.9]], "self-intersecting"),  # bow tie
        ("region", [[0.1, 0.1], [0.9, 0.1], [0.5, 0.1], [0.5, 0.9]], "self-intersecting"),  # folds back
        ("region", [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "no area"),
        ("region", [[0.1, 0.1], [0.9, 0.1]], "3-512 points"),
        ("region", [[0.1, 0.1]] * 513, "3-512 points"),
        ("region", [[0.1, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]], "repeat"),
        ("region", [[0.2, 0.2], [1.2, 0.2], [0.8, 0.8]], "out of range"),
        ("region", [[0.2, -0.01], [0.8, 0.2], [0.8, 0.8]], "out of range"),
        ("region", [[0.2, float("nan")], [0.8, 0.2], [0.8, 0.8]], "finite"),
        ("region", [[0.2, float("inf")], [0.8, 0.2], [0.8, 0.8]], "finite"),
        ("region", [[0.2, "a"], [0.8, 0.2], [0.8, 0.8]], "two numbers"),
        ("region", [[0.2, True], [0.8, 0.2], [0.8, 0.8]], "two numbers"),
        ("region", [[0.2], [0.8, 0.2], [0.8, 0.8]], "[x, y]"),
        ("region", "0,0 1,1", "list"),
        ("line", [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "exactly 2"),
        ("line", [[0.5, 0.5], [0.5, 0.5]], "distinct"),
        ("circle", SQUARE, "kind"),
    ],
)
def test_bad_geometry_names_the_reason(kind: str, polygon: object, reason: str) -> None:
    with pytest.raises(GeometryError, match=reason):
        validate_geometry(kind, polygon)


def test_point_in_polygon_even_odd() -> None:
    square = validate_geometry("region", SQUARE)
    assert point_in_polygon((0.5, 0.5), square) and not point_in_polygon((0.1, 0.5), square)
    concave = validate_geometry("region", [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.4], [0.1, 0.9]])
    assert not point_in_polygon((0.5, 0.8), concave) and point_in_polygon((0.12, 0.8), concave)


def test_ground_point_is_bottom_centre() -> None:
    assert ground_point((0.1, 0.2, 0.2, 0.4)) == pytest.approx((0.2, 0.6))


def test_config_and_labels() -> None:
    assert validate_config({"confirm_frames": 3, "direction": "ab", "app": 1}) == {
        "confirm_frames": 3, "direction": "ab", "app": 1}  # fmt: skip
    for bad in ({"confirm_frames": 0}, {"confirm_frames": 1.5}, {"min_confidence": 2}, {"direction": "up"}):
        with pytest.raises(ZoneConfigError):
            validate_config(bad)
    assert validate_labels(["person", "car", "person"]) == ["person", "car"]
    with pytest.raises(ZoneConfigError):
        validate_labels([""])
