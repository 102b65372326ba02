"""Per-camera fault state and ground truth (when the path was really serving media)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from heldar.fakecam.auth import AuthScheme, Credentials

if TYPE_CHECKING:
    from heldar.fakecam.source import StreamProfile

logger = logging.getLogger(__name__)


class FaultMode(StrEnum):
    """Fault modes. ``drop`` and ``resume`` are actions; the others are lasting states.

    * ``drop``: abort the path's current connections once; the path is normal afterwards.
    * ``down``: abort the path's connections and refuse new ones until ``resume``; a refused
      connection is closed without any reply as soon as its first request names the path
      (the client sees the connection reset / EOF, like a vanished camera).
    * ``stall``: keep sockets open but send nothing (no RTP, no RTSP replies) until ``resume``;
      requests received meanwhile are answered after ``resume``.
    * ``refuse``: running sessions continue; DESCRIBE/SETUP (new sessions) get ``503``.
    * ``resume``: back to normal.
    """

    NORMAL = "normal"
    DROP = "drop"
    DOWN = "down"
    STALL = "stall"
    REFUSE = "refuse"
    RESUME = "resume"


ACTIONS = {FaultMode.DROP, FaultMode.DOWN, FaultMode.STALL, FaultMode.REFUSE, FaultMode.RESUME}
NOT_SERVING = {FaultMode.DOWN, FaultMode.STALL}


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FaultEvent:
    at: datetime
    mode: FaultMode
    previous: FaultMode


@dataclass
class CameraPath:
    """One simulated camera (RTSP path ``/<name>``)."""

    name: str
    credentials: Credentials | None = None
    replay_enabled: bool = True
    mode: FaultMode = FaultMode.NORMAL
    truth: list[list[datetime | None]] = field(default_factory=list)
    log: list[FaultEvent] = field(default_factory=list)
    device_port: int | None = None
    profile: StreamProfile | None = None  # its own stream; None: the simulator's default
    unstalled: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.unstalled.set()
        self.truth.append([utcnow(), None])

    @classmethod
    def create(
        cls,
        name: str,
        username: str | None = None,
        password: str | None = None,
        auth: AuthScheme = "any",
        replay_enabled: bool = True,
    ) -> CameraPath:
        creds = None
        if username is not None:
            creds = Credentials(username=username, password=password or "", scheme=auth)
        return cls(name=name, credentials=creds, replay_enabled=replay_enabled)

    @property
    def serving(self) -> bool:
        return self.mode not in NOT_SERVING

    def apply(self, action: FaultMode, at: datetime | None = None) -> FaultMode:
        """Change state; returns the new mode. Ground truth intervals follow the state."""
        if action not in ACTIONS:
            raise ValueError(f"unknown fault mode {action!r}")
        now = at or utcnow()
        previous = self.mode
        was_serving = self.serving
        if action is FaultMode.DROP:
            new = FaultMode.NORMAL
        elif action is FaultMode.RESUME:
            new = FaultMode.NORMAL
        else:
            new = action
        self.mode = new
        self.log.append(FaultEvent(at=now, mode=action, previous=previous))
        if was_serving:
            # A drop cuts every session: close the interval and open a new one at the same instant.
            if not self.serving or action is FaultMode.DROP:
                self.truth[-1][1] = now
        if self.serving and (not was_serving or action is FaultMode.DROP):
            self.truth.append([now, None])
        if new is FaultMode.STALL:
            self.unstalled.clear()
        else:
            self.unstalled.set()
        logger.info("fakecam camera %s: fault %s (%s -> %s)", self.name, action, previous, new)
        return new

    def truth_intervals(self) -> list[tuple[datetime, datetime | None]]:
        return [(start, end) for start, end in self.truth if start is not None]

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "mode": str(self.mode),
            "serving": self.serving,
            "auth": None if self.credentials is None else self.credentials.scheme,
            "replay_enabled": self.replay_enabled,
            "device_port": self.device_port,
        }
