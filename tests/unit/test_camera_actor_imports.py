"""The camera actor's module graph stays light (issue 18): one such process per camera, or per recorder host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_camera_and_host_actors_import_no_database_driver_or_settings() -> None:
    code = (
        "import sys, actors.camera, actors.recorder_host\n"
        "heavy = ('asyncpg', 'config', 'pydantic_settings', 'fastapi', 'cv2', 'numpy')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_writer_names_match_the_writer_module() -> None:
    from actors import camera, writer

    assert camera.WRITER_PREFIX == writer.WRITER_PREFIX
    assert [camera.writer_name(i) for i in range(3)] == [writer.writer_name(i) for i in range(3)]
