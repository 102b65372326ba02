"""``heldar demo``: the all-in-one runtime on embedded defaults."""

from __future__ import annotations

from api.server import run as serve
from config import Settings


def run(settings: Settings) -> int:
    return serve(settings)
