"""Pins that hold: pyproject.toml's requirements and constraints.txt (what make installs with) agree, and the
pins issue 16 and 15 ask for are there (exact Ray, ruff and pgserver; the lower and upper bounds)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [req for group in project.get("optional-dependencies", {}).values() for req in group]
    return [Requirement(text) for text in [*project["dependencies"], *extras]]


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_requirement_is_constrained_to_a_version_it_accepts() -> None:
    pins = _constraints()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required but not in constraints.txt (make constraints)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"pyproject.toml wants {req} but constraints.txt pins {pins[name]}"
        )


def test_the_project_itself_is_not_constrained() -> None:
    assert "heldar" not in _constraints()


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("starlette", ">=0.49.1"),
        ("opencv-python-headless", ">=4.10,<5"),
        ("pytest-asyncio", ">=0.26"),
        ("av", "<20"),
        ("httpx", "<1"),
    ],
)
def test_bounds_issue_16_asks_for(name: str, spec: str) -> None:
    req = next(r for r in _requirements() if canonicalize_name(r.name) == name)
    for part in spec.split(","):
        assert part in {str(s) for s in req.specifier}, f"{name}: {req.specifier} lacks {part}"


@pytest.mark.parametrize("name", ["ray", "ruff", "pgserver"])
def test_exact_pins(name: str) -> None:
    req = next(r for r in _requirements() if canonicalize_name(r.name) == name)
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{name} must be pinned exactly, not {req.specifier}"


def test_ray_pin_is_the_installed_ray() -> None:
    """Every process that joins a cluster must run the same Ray: the pin, the constraints and this venv agree."""
    import ray

    req = next(r for r in _requirements() if r.name == "ray")
    assert "default" in req.extras
    assert str(next(iter(req.specifier)).version) == ray.__version__ == str(_constraints()["ray"])
