"""Process accounting for benchmarks: CPU seconds of a process tree and PSS/RSS, from /proc via psutil.

CPU of a tree at one instant is ``self + reaped children + live descendants``: when a parent reaps a
child (asyncio does for ffmpeg), the kernel adds the child's times to the parent's ``children_*``
counters, so the delta between two samples stays right even when a child exits or restarts in between.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

logger = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass(frozen=True)
class TreeCpu:
    """One CPU sample of a process and its descendants (seconds, user + system)."""

    pid: int
    alive: bool
    self_s: float = 0.0
    reaped_children_s: float = 0.0
    live_children_s: float = 0.0
    child_pids: tuple[int, ...] = ()

    @property
    def children_s(self) -> float:
        return self.reaped_children_s + self.live_children_s

    @property
    def total_s(self) -> float:
        return self.self_s + self.children_s


def _own_cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def tree_cpu(pid: int, *, children: bool = True) -> TreeCpu:
    """CPU seconds of ``pid`` (and, with ``children``, of its live and reaped descendants) right now."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            if proc.status() == psutil.STATUS_ZOMBIE:
                return TreeCpu(pid, alive=False, self_s=float(times.user + times.system))
            self_s = float(times.user + times.system)
            reaped = float(times.children_user + times.children_system) if children else 0.0
        kids = proc.children(recursive=True) if children else []
    except psutil.NoSuchProcess:
        return TreeCpu(pid, alive=False)
    live = 0.0
    pids: list[int] = []
    for kid in kids:
        try:
            live += _own_cpu(kid)
            pids.append(kid.pid)
        except psutil.NoSuchProcess:
            continue
    return TreeCpu(pid, True, self_s, reaped, live, tuple(sorted(pids)))


@dataclass(frozen=True)
class CpuDelta:
    """CPU used by a tree between two samples."""

    total_s: float
    self_s: float
    children_s: float
    alive: bool
    children_changed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_s": round(self.total_s, 3),
            "self_cpu_s": round(self.self_s, 3),
            "children_cpu_s": round(self.children_s, 3),
            "alive": self.alive,
            "children_changed": self.children_changed,
        }


def cpu_delta(before: TreeCpu, after: TreeCpu) -> CpuDelta:
    if not after.alive:  # the tree ended inside the window: what it used is lost with it
        return CpuDelta(0.0, 0.0, 0.0, alive=False, children_changed=True)
    self_s = max(0.0, after.self_s - before.self_s)
    children_s = max(0.0, after.children_s - before.children_s)
    return CpuDelta(self_s + children_s, self_s, children_s, True, before.child_pids != after.child_pids)


@dataclass(frozen=True)
class Mem:
    """Memory of one process, bytes."""

    pss: int = 0
    rss: int = 0
    uss: int = 0

    def __add__(self, other: Mem) -> Mem:
        return Mem(self.pss + other.pss, self.rss + other.rss, self.uss + other.uss)

    def as_mb(self) -> dict[str, float]:
        return {"pss_mb": round(self.pss / MB, 2), "rss_mb": round(self.rss / MB, 2), "uss_mb": round(self.uss / MB, 2)}


def memory(pid: int) -> Mem | None:
    """PSS/RSS/USS of ``pid`` (reads smaps; same user only), or ``None`` when it is gone."""
    try:
        info = psutil.Process(pid).memory_full_info()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    return Mem(pss=int(getattr(info, "pss", 0)), rss=int(info.rss), uss=int(getattr(info, "uss", 0)))


def children_memory(pid: int) -> Mem:
    """Summed memory of the live descendants of ``pid``."""
    total = Mem()
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return total
    for kid in kids:
        mem = memory(kid.pid)
        if mem is not None:
            total = total + mem
    return total


@dataclass
class Summary:
    """median/min/max/mean of samples (``None`` entries are failures and are counted, not summarised)."""

    values: list[float | None] = field(default_factory=list)

    def as_dict(self, digits: int = 3) -> dict[str, object]:
        ok = [v for v in self.values if v is not None]
        out: dict[str, object] = {"n": len(ok), "failed": len(self.values) - len(ok)}
        if ok:
            out.update(
                median=round(statistics.median(ok), digits),
                min=round(min(ok), digits),
                max=round(max(ok), digits),
                mean=round(statistics.fmean(ok), digits),
            )
        return out


def summarise(values: Iterable[float | None], digits: int = 3) -> dict[str, object]:
    return Summary(list(values)).as_dict(digits)


def is_ray_worker(proc: psutil.Process) -> bool:
    """Ray worker processes set their title to ``ray::<Class or IDLE>``."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmd) and cmd[0].startswith("ray::")


def process_title(pid: int) -> str:
    try:
        cmd = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    return cmd[0] if cmd else "?"
