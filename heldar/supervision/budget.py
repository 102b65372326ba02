"""How the actors share the database connection budget (``HELDAR_DB_ACTOR_CONNECTIONS``).

At 200 cameras PostgreSQL must not see 200 connections: camera actors hold none and write through a few
``recording-writer`` actors. The budget is split once, here, so every actor sizes its pool from the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPERVISOR_CONNECTIONS = 2  # a pool of one for its queries + the connection that holds the leader lock
RETENTION_CONNECTIONS = 2  # the sweep's leader-lock session + the one its batches run on
MIN_BUDGET = SUPERVISOR_CONNECTIONS + RETENTION_CONNECTIONS + 1 + 1


@dataclass(frozen=True)
class ConnectionBudget:
    total: int
    supervisor: int
    retention: int
    ingest: int
    writers: int  # how many recording-writer actors
    per_writer: int  # pool size of each

    @property
    def used(self) -> int:
        return self.supervisor + self.retention + self.ingest + self.writers * self.per_writer


def split_connection_budget(total: int, writers_wanted: int, ingest: int = 1) -> ConnectionBudget:
    """Give the fixed actors their share and the writers the rest (at least one connection each).

    ``ingest`` is the ingest actor's pool; it is shrunk (to one) before the writers go without.
    """
    if total < MIN_BUDGET:
        raise ValueError(f"the actor connection budget must be at least {MIN_BUDGET}, got {total}")
    if writers_wanted < 1:
        raise ValueError("at least one recording writer is needed")
    ingest = max(1, min(ingest, total - SUPERVISOR_CONNECTIONS - RETENTION_CONNECTIONS - 1))
    left = total - SUPERVISOR_CONNECTIONS - RETENTION_CONNECTIONS - ingest
    writers = min(writers_wanted, left)
    return ConnectionBudget(
        total=total,
        supervisor=SUPERVISOR_CONNECTIONS,
        retention=RETENTION_CONNECTIONS,
        ingest=ingest,
        writers=writers,
        per_writer=left // writers,
    )


def writer_for(camera_id: str, writers: int, attempt: int = 0) -> int:
    """The writer index a camera uses first (stable across processes), then the next ones on failure."""
    digest = sum((i + 1) * ord(ch) for i, ch in enumerate(camera_id))
    return (digest + attempt) % writers
