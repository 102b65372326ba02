"""Zone geometry: validation of normalised polygons and lines, point-in-polygon and segment crossing.

Coordinates are normalised to 0..1 from the top-left of the frame. A ``region`` is a simple polygon of
3-512 vertices (not self-intersecting, non-zero area); a ``line`` is exactly two distinct points A→B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Point = tuple[float, float]

KINDS = ("region", "line")
MIN_REGION_POINTS = 3
MAX_REGION_POINTS = 512
_EPS = 1e-12


class GeometryError(ValueError):
    """The geometry is unusable; the message says why (it becomes a 422)."""


def validate_geometry(kind: str, polygon: Any) -> list[Point]:
    """Check ``polygon`` for a zone of ``kind`` and return it as a list of ``(x, y)`` floats."""
    if kind not in KINDS:
        raise GeometryError(f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(polygon, list | tuple):
        raise GeometryError("polygon must be a list of [x, y] points")
    points: list[Point] = []
    for i, raw in enumerate(polygon):
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise GeometryError(f"point {i} must be [x, y]")
        try:
            x, y = float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            raise GeometryError(f"point {i} must hold two numbers") from None
        if isinstance(raw[0], bool) or isinstance(raw[1], bool):
            raise GeometryError(f"point {i} must hold two numbers")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise GeometryError(f"point {i} is not a finite number")
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise GeometryError(f"point {i} is out of range: coordinates are normalised to 0..1")
        points.append((x, y))
    if kind == "line":
        if len(points) != 2:
            raise GeometryError("a line has exactly 2 points")
        if _same(points[0], points[1]):
            raise GeometryError("a line needs two distinct points")
        return points
    if not MIN_REGION_POINTS <= len(points) <= MAX_REGION_POINTS:
        raise GeometryError(f"a region has {MIN_REGION_POINTS}-{MAX_REGION_POINTS} points, got {len(points)}")
    n = len(points)
    for i in range(n):
        if _same(points[i], points[(i + 1) % n]):
            raise GeometryError(f"points {i} and {(i + 1) % n} repeat the same vertex")
    if abs(polygon_area(points)) < 1e-9:
        raise GeometryError("the region has no area (its points are collinear)")
    crossing = first_self_intersection(points)
    if crossing is not None:
        raise GeometryError(f"the region is self-intersecting (edges {crossing[0]} and {crossing[1]} cross)")
    return points


def _same(a: Point, b: Point) -> bool:
    return abs(a[0] - b[0]) <= _EPS and abs(a[1] - b[1]) <= _EPS


def polygon_area(points: Sequence[Point]) -> float:
    """Signed area (shoelace)."""
    n = len(points)
    return 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))


def cross(a: Point, b: Point, p: Point) -> float:
    """z of (b - a) x (p - a): > 0 when ``p`` lies on one side of a→b, < 0 on the other, 0 on the line."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return (
        min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS
        and min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS
    )


def segments_touch(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when the closed segments p1p2 and q1q2 share any point (crossing, touching or overlapping)."""
    d1, d2 = cross(q1, q2, p1), cross(q1, q2, p2)
    d3, d4 = cross(p1, p2, q1), cross(p1, p2, q2)
    if ((d1 > _EPS and d2 < -_EPS) or (d1 < -_EPS and d2 > _EPS)) and (
        (d3 > _EPS and d4 < -_EPS) or (d3 < -_EPS and d4 > _EPS)
    ):
        return True
    return (
        (abs(d1) <= _EPS and _on_segment(q1, q2, p1))
        or (abs(d2) <= _EPS and _on_segment(q1, q2, p2))
        or (abs(d3) <= _EPS and _on_segment(p1, p2, q1))
        or (abs(d4) <= _EPS and _on_segment(p1, p2, q2))
    )


def first_self_intersection(points: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that touch, or None for a simple polygon (O(n²), n ≤ 512)."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    boxes = [(min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1])) for a, b in edges]
    for i in range(n):
        bi = boxes[i]
        for j in range(i + 1, n):
            adjacent = j == i + 1 or (i == 0 and j == n - 1)
            bj = boxes[j]
            if bi[1] < bj[0] - _EPS or bj[1] < bi[0] - _EPS or bi[3] < bj[2] - _EPS or bj[3] < bi[2] - _EPS:
                continue
            if adjacent:
                # adjacent edges share a vertex; they must not fold back over each other
                shared = edges[i][1] if j == i + 1 else edges[i][0]
                other_i = edges[i][0] if j == i + 1 else edges[i][1]
                other_j = edges[j][1] if j == i + 1 else edges[j][0]
                if abs(cross(shared, other_i, other_j)) <= _EPS and (
                    (other_i[0] - shared[0]) * (other_j[0] - shared[0])
                    + (other_i[1] - shared[1]) * (other_j[1] - shared[1])
                    > 0
                ):
                    return (i, j)
                continue
            if segments_touch(edges[i][0], edges[i][1], edges[j][0], edges[j][1]):
                return (i, j)
    return None


def point_in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting."""
    x, y = p
    inside = False
    n = len(polygon)
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y):
            x_cross = (xj - xi) * (y - yi) / (yj - yi) + xi
            if x < x_cross:
                inside = not inside
        j = i
    return inside


def ground_point(bbox: Sequence[float]) -> Point:
    """The bottom-centre of an ``[x, y, w, h]`` box (top-left origin): where the object touches the ground."""
    x, y, w, h = bbox
    return (x + w / 2.0, y + h)
