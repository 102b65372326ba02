"""Fixtures for integration tests that need cameras."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from heldar.fakecam import FakeCamSimThread


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    """A camera simulator for the module (modules that need another source define their own ``sim``)."""
    with FakeCamSimThread() as s:
        yield s
