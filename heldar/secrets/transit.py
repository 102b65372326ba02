"""Secrets in transit inside the box: what a Ray actor is given instead of the database URL.

Actor constructor arguments are kept by Ray's control store (to restart the actor) and can be read by anyone
who can reach the cluster, so the database URL, which may carry a password, never travels as one. An actor
gets a *reference* and resolves it in its own process:

* ``file:<path>``: the URL is written once to a file readable only by this user, under
  ``<data_dir>/.secrets/``, and only the path travels. That serves one box (the embedded PostgreSQL, a test's
  own database) and nodes that share the data directory;
* ``env:HELDAR_DATABASE_URL|file:<path>`` when the URL is this process's own ``HELDAR_DATABASE_URL``: a node
  that has the variable (every pod of the Helm chart gets it from the Secret) uses it, one that has not falls
  back to the file. On a cluster whose nodes share no data directory, set ``HELDAR_DATABASE_URL`` on each.

``heldar.store.database`` resolves references wherever it opens a connection, so actors simply pass theirs on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATABASE_URL_ENV = "HELDAR_DATABASE_URL"
ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
ALTERNATIVE = "|"

__all__ = ["DATABASE_URL_ENV", "SecretRefError", "database_ref", "is_ref", "resolve"]


class SecretRefError(RuntimeError):
    """A reference cannot be resolved on this node; the message says what to set (never the secret)."""


def is_ref(value: str) -> bool:
    return value.startswith((ENV_PREFIX, FILE_PREFIX))


def database_ref(url_or_ref: str, secrets_dir: Path) -> str:
    """The reference an actor gets for ``url_or_ref`` (a reference is passed on unchanged)."""
    if is_ref(url_or_ref):
        return url_or_ref
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(secrets_dir, 0o700)
    path = secrets_dir / f"database-{hashlib.sha256(url_or_ref.encode()).hexdigest()[:16]}.url"
    if not path.exists() or path.read_text() != url_or_ref:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(url_or_ref)
        os.replace(tmp, path)
    ref = FILE_PREFIX + str(path)
    if os.environ.get(DATABASE_URL_ENV) == url_or_ref:
        return f"{ENV_PREFIX}{DATABASE_URL_ENV}{ALTERNATIVE}{ref}"
    return ref


def resolve(value: str) -> str:
    """The secret behind a reference (the first alternative that resolves on this node); anything else (a plain
    URL, in this process) is returned as it is."""
    if not is_ref(value):
        return value
    problems = []
    for choice in value.split(ALTERNATIVE):
        try:
            return _resolve_one(choice)
        except SecretRefError as exc:
            problems.append(str(exc))
    raise SecretRefError("; ".join(problems))


def _resolve_one(value: str) -> str:
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        found = os.environ.get(name)
        if not found:
            raise SecretRefError(f"{name} is not set on this node: set it in every Ray node's environment")
        return found
    path = Path(value[len(FILE_PREFIX) :])
    try:
        return path.read_text()
    except OSError as exc:
        raise SecretRefError(
            f"cannot read the database URL file {path} on this node ({exc.__class__.__name__}): on a "
            f"cluster, set {DATABASE_URL_ENV} in every node's environment"
        ) from None
