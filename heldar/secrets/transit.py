"""Secrets in transit inside the box: what a Ray actor is given instead of the database URL.

Actor constructor arguments are kept by Ray's control store (to restart the actor) and can be read by anyone
who can reach the cluster, so the database URL, which may carry a password, never travels as one. An actor
gets a *reference* and resolves it in its own process:

* ``env:HELDAR_DATABASE_URL`` when the URL is this process's own ``HELDAR_DATABASE_URL``: every node of a
  deployment has it in its environment (the Helm chart sets it from a Secret), so nothing is sent at all;
* ``file:<path>`` otherwise (the embedded PostgreSQL, a URL given another way): the URL is written once to a
  file readable only by this user, under ``<data_dir>/.secrets/``, and only the path travels. The path must be
  visible where the actor runs (one box, or a shared data directory); on a cluster set
  ``HELDAR_DATABASE_URL`` on every node instead.

``heldar.store.database`` resolves references wherever it opens a connection, so actors simply pass theirs on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATABASE_URL_ENV = "HELDAR_DATABASE_URL"
ENV_PREFIX = "env:"
FILE_PREFIX = "file:"

__all__ = ["DATABASE_URL_ENV", "SecretRefError", "database_ref", "is_ref", "resolve"]


class SecretRefError(RuntimeError):
    """A reference cannot be resolved on this node; the message says what to set (never the secret)."""


def is_ref(value: str) -> bool:
    return value.startswith((ENV_PREFIX, FILE_PREFIX))


def database_ref(url_or_ref: str, secrets_dir: Path) -> str:
    """The reference an actor gets for ``url_or_ref`` (a reference is passed on unchanged)."""
    if is_ref(url_or_ref):
        return url_or_ref
    if os.environ.get(DATABASE_URL_ENV) == url_or_ref:
        return ENV_PREFIX + DATABASE_URL_ENV
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(secrets_dir, 0o700)
    path = secrets_dir / f"database-{hashlib.sha256(url_or_ref.encode()).hexdigest()[:16]}.url"
    if not path.exists() or path.read_text() != url_or_ref:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(url_or_ref)
        os.replace(tmp, path)
    return FILE_PREFIX + str(path)


def resolve(value: str) -> str:
    """The secret behind a reference; anything else (a plain URL, in this process) is returned as it is."""
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        found = os.environ.get(name)
        if not found:
            raise SecretRefError(f"{name} is not set on this node: set it in every Ray node's environment")
        return found
    if value.startswith(FILE_PREFIX):
        path = Path(value[len(FILE_PREFIX) :])
        try:
            return path.read_text()
        except OSError as exc:
            raise SecretRefError(
                f"cannot read the database URL file {path} on this node ({exc.__class__.__name__}): on a "
                f"cluster, set {DATABASE_URL_ENV} in every node's environment"
            ) from None
    return value
