"""heldar fakecam: a real RTSP camera simulator (one shared H.264 encoder, many paths, faults, replay)."""

from heldar.fakecam.auth import AuthScheme, Credentials
from heldar.fakecam.faults import CameraPath, FaultEvent, FaultMode
from heldar.fakecam.runner import FakeCamSimThread
from heldar.fakecam.server import FakeCamSim
from heldar.fakecam.source import EncoderSettings, LavfiSource, TestPatternSource, VideoSource

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
    "TestPatternSource",
    "VideoSource",
]
