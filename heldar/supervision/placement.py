"""Where a camera actor should run: the live node with the fewest cameras (Ray's SPREAD ignores actors that
need no resources, so the supervisor places them itself).

A node is eligible when it is alive and, if any node in the cluster declares the custom resource
``heldar_recorder``, declares it too (so an operator can keep recorders off GPU or API nodes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

RECORDER_RESOURCE = "heldar_recorder"


def eligible_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the live nodes that may run recorders (from ``ray.nodes()`` entries)."""
    alive = [n for n in nodes if n.get("Alive")]
    tagged = [n for n in alive if RECORDER_RESOURCE in (n.get("Resources") or {})]
    return sorted(str(n["NodeID"]) for n in (tagged or alive))


def choose_node(eligible: list[str], placed: Iterable[str | None]) -> str | None:
    """The eligible node with the fewest cameras placed on it (ties: the lowest id); None when none is live."""
    if not eligible:
        return None
    load = Counter(n for n in placed if n in eligible)
    return min(eligible, key=lambda n: (load[n], n))
