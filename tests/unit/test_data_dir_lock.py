from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from heldar.store.database import DataDirInUse, DataDirLock, describe_connect_error

HOLD = """
import subprocess, sys, time
from pathlib import Path
from heldar.store.database import DataDirLock
DataDirLock(Path(sys.argv[1])).acquire()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # outlives this process
print(child.pid, flush=True)
time.sleep(60)
"""


def test_second_lock_on_the_same_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path) as first:
        assert first.held
        with pytest.raises(DataDirInUse) as err:
            DataDirLock(tmp_path).acquire()
        assert str(err.value) == (
            f"data directory {tmp_path} is in use by another heldar (pid {os.getpid()}); stop it first, "
            "or set HELDAR_DATA_DIR to another directory"
        )
    with DataDirLock(tmp_path) as again:  # released: free again
        assert again.held


def test_lock_dies_with_its_process_even_when_a_child_lives_on(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None
    grandchild = int(holder.stdout.readline())
    try:
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            DataDirLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        os.kill(grandchild, 0)  # still alive: it must not have inherited the lock
        deadline = time.monotonic() + 5
        while True:
            try:
                DataDirLock(tmp_path).acquire().release()
                break
            except DataDirInUse:
                assert time.monotonic() < deadline, "the lock outlived its process"
                time.sleep(0.1)
    finally:
        holder.kill()
        os.kill(grandchild, signal.SIGKILL)


@pytest.mark.parametrize(
    ("url", "exc", "message"),
    [
        (
            "postgresql://u:pw@db.example:6543/heldar",
            ConnectionRefusedError(111, "refused"),
            "cannot reach the database at db.example:6543 (connection refused); is PostgreSQL running? "
            "check HELDAR_DATABASE_URL",
        ),
        (
            "postgresql://u:pw@db.example/heldar",
            TimeoutError(),
            "cannot reach the database at db.example:5432 (timed out); check HELDAR_DATABASE_URL or raise "
            "HELDAR_DB_CONNECT_TIMEOUT_S",
        ),
        (
            "postgresql://u:pw@nohost.invalid/heldar",
            OSError(-2, "Name or service not known"),
            "cannot reach the database at nohost.invalid:5432 (Name or service not known); check HELDAR_DATABASE_URL",
        ),
        (
            "postgresql://alice:pw@db/heldar",
            asyncpg.InvalidPasswordError("password authentication failed"),
            "the database at db:5432 refused the credentials of user 'alice'; check HELDAR_DATABASE_URL",
        ),
        (
            "postgresql://alice:pw@db/nodb",
            asyncpg.InvalidCatalogNameError('database "nodb" does not exist'),
            "the database at db:5432 has no database 'nodb'; create it (createdb nodb) or check HELDAR_DATABASE_URL",
        ),
        (
            "postgresql://pgserver:@/postgres?host=/srv/data/pg",
            ConnectionRefusedError(111, "refused"),
            "cannot reach the database (connection refused); is PostgreSQL running? check HELDAR_DATABASE_URL",
        ),
    ],
)
def test_connect_errors_are_explained_without_secrets(url: str, exc: BaseException, message: str) -> None:
    text = describe_connect_error(url, exc)
    assert text == message
    assert "pw" not in text
