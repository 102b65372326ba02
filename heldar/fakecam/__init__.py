"""heldar fakecam: a real RTSP camera simulator (shared H.264/H.265 encoders or a looped pre-encoded 1080p clip,
optional G.711 audio, many paths, faults, replay)."""

from heldar.fakecam.auth import AuthScheme, Credentials
from heldar.fakecam.faults import CameraPath, FaultEvent, FaultMode
from heldar.fakecam.runner import FakeCamSimThread
from heldar.fakecam.server import FakeCamSim
from heldar.fakecam.source import (
    EncoderSettings,
    LavfiSource,
    LoopedFileSource,
    StreamProfile,
    TestPatternSource,
    VideoSource,
)

__all__ = [
    "AuthScheme",
    "CameraPath",
    "Credentials",
    "EncoderSettings",
    "FakeCamSim",
    "FakeCamSimThread",
    "FaultEvent",
    "FaultMode",
    "LavfiSource",
    "LoopedFileSource",
    "StreamProfile",
    "TestPatternSource",
    "VideoSource",
]
