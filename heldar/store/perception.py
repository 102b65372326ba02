"""SQL for perception: AI tasks, sampler units, detection ingest (outbox + COPY), fan-out ledger, reads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import NotFound
from heldar.ids import new_id
from heldar.perception.detections import Detection, DetectionBatch
from heldar.secrets import open_bytes, seal_bytes

Executor = asyncpg.Pool | asyncpg.Connection

TASK_COLUMNS = "id, camera_id, task_type, stream_profile, fps, width, config, enabled, created_at, updated_at"
DETECTION_COLUMNS = (
    "id", "camera_id", "task_type", "timestamp", "label", "confidence", "bbox", "track_id", "attributes",
    "frame_id", "provenance",
)  # fmt: skip


# --- tasks ----------------------------------------------------------------------------------------
async def list_tasks(db: Executor, camera_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(f"SELECT {TASK_COLUMNS} FROM ai_tasks WHERE camera_id = $1 ORDER BY id", camera_id)
    return [dict(r) for r in rows]


async def get_task(db: Executor, task_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT {TASK_COLUMNS} FROM ai_tasks WHERE id = $1", task_id)
    if row is None:
        raise NotFound(f"ai task {task_id[:80]!r} not found")
    return dict(row)


async def create_task(db: Executor, camera_id: str, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Insert, or answer the existing task of (camera, task_type, profile); ``(row, created)``."""
    row = await db.fetchrow(
        f"INSERT INTO ai_tasks (id, camera_id, task_type, stream_profile, fps, width, config, enabled)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (camera_id, task_type, stream_profile) DO NOTHING"
        f" RETURNING {TASK_COLUMNS}",
        new_id("ai"), camera_id, values["task_type"], values["stream_profile"], values["fps"], values["width"],
        values.get("config") or {}, values.get("enabled", True),
    )  # fmt: skip
    if row is not None:
        return dict(row), True
    existing = await db.fetchrow(
        f"SELECT {TASK_COLUMNS} FROM ai_tasks WHERE camera_id = $1 AND task_type = $2 AND stream_profile = $3",
        camera_id, values["task_type"], values["stream_profile"],
    )  # fmt: skip
    if existing is None:  # deleted between the two statements
        raise NotFound("ai task vanished; retry")
    return dict(existing), False


async def update_task(db: Executor, task_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    allowed = ("stream_profile", "fps", "width", "config", "enabled")
    current = await get_task(db, task_id)
    merged = {k: changes.get(k, current[k]) for k in allowed}
    row = await db.fetchrow(
        f"UPDATE ai_tasks SET stream_profile = $2, fps = $3, width = $4, config = $5, enabled = $6,"
        f" updated_at = now() WHERE id = $1 RETURNING {TASK_COLUMNS}",
        task_id, merged["stream_profile"], merged["fps"], merged["width"], merged["config"], merged["enabled"],
    )  # fmt: skip
    if row is None:
        raise NotFound(f"ai task {task_id[:80]!r} not found")
    return dict(row)


async def delete_task(db: Executor, task_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"DELETE FROM ai_tasks WHERE id = $1 RETURNING {TASK_COLUMNS}", task_id)
    if row is None:
        raise NotFound(f"ai task {task_id[:80]!r} not found")
    return dict(row)


async def enabled_tasks(db: Executor, camera_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Enabled tasks on enabled cameras, by task id (worker discovery order)."""
    rows = await db.fetch(
        "SELECT t.id, t.camera_id, t.task_type, t.stream_profile, t.fps, t.width, t.config"
        " FROM ai_tasks t JOIN cameras c ON c.id = t.camera_id"
        " WHERE t.enabled AND c.enabled AND ($1::text[] IS NULL OR t.camera_id = ANY($1)) ORDER BY t.id",
        list(camera_ids) if camera_ids is not None else None,
    )
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class SamplerUnit:
    """One decoder: (camera, profile) with the max fps/width of its enabled tasks."""

    camera_id: str
    profile: str
    fps: float
    width: int
    priority: int
    tasks: tuple[tuple[str, str, str], ...]  # (task id, task type, config json)
    updated: str  # changes whenever a task or the camera changes

    @property
    def key(self) -> tuple[str, str]:
        return (self.camera_id, self.profile)


async def sampler_units(db: Executor) -> list[SamplerUnit]:
    rows = await db.fetch(
        "SELECT t.camera_id, t.stream_profile, max(t.fps) AS fps, max(t.width) AS width, c.priority,"
        " array_agg(t.id ORDER BY t.id) AS ids, array_agg(t.task_type ORDER BY t.id) AS types,"
        " array_agg(t.config::text ORDER BY t.id) AS configs,"
        " greatest(max(t.updated_at), c.updated_at) AS updated"
        " FROM ai_tasks t JOIN cameras c ON c.id = t.camera_id WHERE t.enabled AND c.enabled"
        " GROUP BY t.camera_id, t.stream_profile, c.priority, c.updated_at ORDER BY t.camera_id, t.stream_profile"
    )
    return [
        SamplerUnit(
            r["camera_id"],
            r["stream_profile"],
            float(r["fps"]),
            int(r["width"]),
            int(r["priority"]),
            tuple(zip(r["ids"], r["types"], r["configs"], strict=True)),
            r["updated"].isoformat(),
        )
        for r in rows
    ]


# --- ingest ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestItem:
    batch: DetectionBatch
    provenance: str  # worker | kernel:<producer>
    produced_by: str  # apikey:<id> | usr:<id> | kernel:<producer>
    server_attributes: dict[str, Any] | None = None  # merged over each row's attributes (source, _prov)


@dataclass(frozen=True)
class IngestResult:
    inserted: list[bool]  # per item: False when (camera, frame_id) was already ingested
    rows: int


@dataclass
class PreparedIngest:
    """Items de-duplicated per (camera, frame_id) with their detection rows built (no database yet), so a
    writer can build the next write while the previous one is at PostgreSQL."""

    items: Sequence[IngestItem]
    first: dict[tuple[str, str], int]  # key → index of its first item
    unique: list[IngestItem]
    rows: list[list[tuple[Any, ...]]]  # per unique item, its COPY records


def _rows(item: IngestItem, prefix: str, start: int) -> list[tuple[Any, ...]]:
    b = item.batch
    cam, task, at, fid, prov, extra = b.camera_id, b.task_type, b.captured_at, b.frame_id, item.provenance, \
        item.server_attributes  # fmt: skip
    return [
        (f"{prefix}{start + i:08x}", cam, task, at, det.label, det.confidence,
         None if det.bbox is None else list(det.bbox), det.track_id,
         det.attributes if extra is None else {**det.attributes, **extra}, fid, prov)
        for i, det in enumerate(b.detections)
    ]  # fmt: skip


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Building tens of thousands of (acyclic) row tuples would set off the cyclic collector again and again,
    each time walking every live object; reference counting frees these rows anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _dedupe(items: Sequence[IngestItem]) -> tuple[dict[tuple[str, str], int], list[IngestItem]]:
    first: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        first.setdefault((item.batch.camera_id, item.batch.frame_id), i)
    return first, [items[i] for i in sorted(first.values())]


def prepare_ingest(items: Sequence[IngestItem]) -> PreparedIngest:
    first, unique = _dedupe(items)
    prefix = f"det_{secrets.token_hex(8)}"  # ids: a random 64-bit prefix per write and a counter
    rows, n = [], 0
    with _gc_paused():
        for item in unique:
            rows.append(_rows(item, prefix, n))
            n += len(item.batch.detections)
    return PreparedIngest(items, first, unique, rows)


async def prepare_ingest_async(items: Sequence[IngestItem], yield_every: int = 2000) -> PreparedIngest:
    """:func:`prepare_ingest`, yielding to the event loop every ``yield_every`` rows (so a COPY in flight on
    the same loop keeps streaming while this one is built)."""
    first, unique = _dedupe(items)
    prefix = f"det_{secrets.token_hex(8)}"
    rows: list[list[tuple[Any, ...]]] = []
    n, at = 0, 0
    while at < len(unique):
        with _gc_paused():  # never across an await
            since = 0
            while at < len(unique) and since < yield_every:
                item = unique[at]
                rows.append(_rows(item, prefix, n))
                count = len(item.batch.detections)
                n, since, at = n + count, since + count, at + 1
        await asyncio.sleep(0)
    return PreparedIngest(items, first, unique, rows)


FinishArgs = tuple[dict[str, Sequence[tuple[str, str]]], Sequence[tuple[str, str]]]


async def write_ingest(pool: asyncpg.Pool, prepared: PreparedIngest, finish: FinishArgs | None = None) -> IngestResult:
    """Outbox rows first (``ON CONFLICT DO NOTHING`` on (camera, frame_id)), then the detections of the
    frames that were new, by COPY, in one transaction. A repeat of a frame writes nothing. ``finish`` (the
    fan-out bookkeeping of an earlier write, see :func:`finish_fanout`) rides in the same transaction."""
    unique = prepared.unique
    if not unique:
        return IngestResult([], 0)
    async with pool.acquire() as conn, conn.transaction():
        if finish is not None:
            await finish_fanout(conn, *finish)
        new = await conn.fetch(
            "INSERT INTO outbox (camera_id, frame_id, task_type, captured_at, detection_count, provenance,"
            " produced_by) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[],"
            " $6::text[], $7::text[]) ON CONFLICT (camera_id, frame_id) DO NOTHING RETURNING camera_id, frame_id",
            [u.batch.camera_id for u in unique], [u.batch.frame_id for u in unique],
            [u.batch.task_type for u in unique], [u.batch.captured_at for u in unique],
            [len(u.batch.detections) for u in unique], [u.provenance for u in unique],
            [u.produced_by for u in unique],
        )  # fmt: skip
        fresh = {(r["camera_id"], r["frame_id"]) for r in new}
        if len(fresh) == len(unique):
            records = [r for rows in prepared.rows for r in rows]
        else:
            records = [r for u, rows in zip(unique, prepared.rows, strict=True)
                       if (u.batch.camera_id, u.batch.frame_id) in fresh for r in rows]  # fmt: skip
        if records:
            await _binary_jsonb(conn)
            await conn.copy_records_to_table("detections", records=records, columns=DETECTION_COLUMNS)
    inserted = []
    for i, item in enumerate(prepared.items):
        key = (item.batch.camera_id, item.batch.frame_id)
        inserted.append(prepared.first[key] == i and key in fresh)
    return IngestResult(inserted, len(records))


async def ingest_one(db: Executor, item: IngestItem) -> IngestResult:
    """One frame (an HTTP batch) in one statement, one round trip: the outbox row (``ON CONFLICT DO NOTHING``)
    and, only when it was new, its detections. Atomic as a single statement is."""
    b, extra = item.batch, item.server_attributes
    dets = b.detections
    prefix = f"det_{secrets.token_hex(8)}"
    boxes = [d.bbox for d in dets]
    row = await db.fetchrow(
        "WITH o AS (INSERT INTO outbox (camera_id, frame_id, task_type, captured_at, detection_count, provenance,"
        "   produced_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (camera_id, frame_id) DO NOTHING"
        "   RETURNING 1),"
        " d AS (INSERT INTO detections (id, camera_id, task_type, \"timestamp\", label, confidence, bbox, track_id,"
        "   attributes, frame_id, provenance)"
        "   SELECT x.id, $1, $3, $4, x.label, x.confidence,"
        "     CASE WHEN x.bx IS NULL THEN NULL ELSE ARRAY[x.bx, x.by, x.bw, x.bh]::real[] END,"
        "     x.track_id, x.attributes, $2, $6"
        "   FROM unnest($8::text[], $9::text[], $10::real[], $11::real[], $12::real[], $13::real[], $14::real[],"
        "     $15::text[], $16::jsonb[]) AS x(id, label, confidence, bx, by, bw, bh, track_id, attributes)"
        "   WHERE EXISTS (SELECT 1 FROM o) RETURNING 1)"
        " SELECT (SELECT count(*) FROM o) AS new, (SELECT count(*) FROM d) AS rows",
        b.camera_id, b.frame_id, b.task_type, b.captured_at, len(dets), item.provenance, item.produced_by,
        [f"{prefix}{i:08x}" for i in range(len(dets))], [d.label for d in dets], [d.confidence for d in dets],
        *([None if box is None else box[k] for box in boxes] for k in range(4)),
        [d.track_id for d in dets],
        [d.attributes if extra is None else {**d.attributes, **extra} for d in dets],
    )  # fmt: skip
    assert row is not None
    return IngestResult([bool(row["new"])], int(row["rows"]))


async def ingest(pool: asyncpg.Pool, items: Sequence[IngestItem]) -> IngestResult:
    """Write ``items`` (see :func:`write_ingest`)."""
    if not items:
        return IngestResult([], 0)
    return await write_ingest(pool, prepare_ingest(items))


async def _binary_jsonb(conn: Any) -> None:
    """COPY speaks binary; the pool's jsonb codec is text. The binary form is a version byte + the text,
    so callers see the same dict in, dict out (the codec stays on this connection)."""
    raw = getattr(conn, "_con", conn)
    if getattr(raw, "_heldar_binary_jsonb", False):
        return
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # non-JSON values become text
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary",
        encoder=lambda v: b"\x01" + encode(v).encode(),
        decoder=lambda b: json.loads(b[1:]),
    )  # fmt: skip
    try:
        raw._heldar_binary_jsonb = True
    except AttributeError:
        pass


async def ingest_horizon_s(db: Executor, camera_id: str) -> float | None:
    """How far back (seconds) a frame of this camera may be dated: its retention; None: no such camera."""
    hours = await db.fetchval("SELECT retention_hours FROM cameras WHERE id = $1", camera_id)
    return None if hours is None else float(hours) * 3600.0


async def existing_cameras(db: Executor, camera_ids: Sequence[str]) -> set[str]:
    rows = await db.fetch("SELECT id FROM cameras WHERE id = ANY($1::text[])", list(set(camera_ids)))
    return {r["id"] for r in rows}


# --- fan-out ledger -------------------------------------------------------------------------------
async def finished_fanout(db: Executor, keys: Sequence[tuple[str, str]]) -> dict[str, set[tuple[str, str]]]:
    """Per consumer, which of these (camera, frame) keys it has already finished."""
    if not keys:
        return {}
    rows = await db.fetch(
        "SELECT f.consumer, f.camera_id, f.frame_id FROM consumer_fanout f"
        " JOIN unnest($1::text[], $2::text[]) AS k(camera_id, frame_id)"
        " ON f.camera_id = k.camera_id AND f.frame_id = k.frame_id",
        [k[0] for k in keys], [k[1] for k in keys],
    )  # fmt: skip
    out: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["consumer"], set()).add((r["camera_id"], r["frame_id"]))
    return out


async def finish_fanout(
    db: Executor, finished: dict[str, Sequence[tuple[str, str]]], complete: Sequence[tuple[str, str]]
) -> None:
    """One statement: record the frames each consumer finished, and mark fanned out the frames every
    consumer has finished (``complete``)."""
    names = [name for name, keys in finished.items() for _ in keys]
    cams = [k[0] for keys in finished.values() for k in keys]
    frames = [k[1] for keys in finished.values() for k in keys]
    if not names and not complete:
        return
    await db.execute(
        "WITH done AS (INSERT INTO consumer_fanout (consumer, camera_id, frame_id)"
        "   SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING)"
        " UPDATE outbox SET fanned_out_at = now() FROM unnest($4::text[], $5::text[]) AS k(camera_id, frame_id)"
        " WHERE outbox.camera_id = k.camera_id AND outbox.frame_id = k.frame_id AND fanned_out_at IS NULL",
        names, cams, frames, [k[0] for k in complete], [k[1] for k in complete],
    )  # fmt: skip


async def unfanned_batches(db: Executor, older_than_s: float, limit: int) -> list[DetectionBatch]:
    """Committed frames not yet fanned out (a crash between commit and fan-out), rebuilt from the rows."""
    outbox = await db.fetch(
        "SELECT camera_id, frame_id, task_type, captured_at, produced_by FROM outbox WHERE fanned_out_at IS NULL"
        " AND created_at < now() - make_interval(secs => $1) ORDER BY seq LIMIT $2",
        older_than_s, limit,
    )  # fmt: skip
    if not outbox:
        return []
    rows = await db.fetch(
        "SELECT d.camera_id, d.frame_id, d.label, d.confidence, d.bbox, d.track_id, d.attributes FROM detections d"
        " JOIN unnest($1::text[], $2::text[]) AS k(camera_id, frame_id)"
        " ON d.camera_id = k.camera_id AND d.frame_id = k.frame_id ORDER BY d.id",
        [r["camera_id"] for r in outbox], [r["frame_id"] for r in outbox],
    )  # fmt: skip
    by_key: dict[tuple[str, str], list[Detection]] = {}
    for r in rows:
        bbox = tuple(r["bbox"]) if r["bbox"] is not None else None
        by_key.setdefault((r["camera_id"], r["frame_id"]), []).append(
            Detection(r["label"], r["confidence"], bbox, r["track_id"], r["attributes"] or {})  # type: ignore[arg-type]
        )
    return [
        DetectionBatch(
            o["camera_id"],
            o["task_type"],
            o["frame_id"],
            o["captured_at"],
            tuple(by_key.get((o["camera_id"], o["frame_id"]), ())),
            o["produced_by"],
        )
        for o in outbox
    ]


# --- reads ----------------------------------------------------------------------------------------
async def list_detections(
    db: Executor, camera_id: str, *, start: datetime | None, end: datetime | None, label: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        'SELECT id, camera_id, task_type, "timestamp", label, confidence, bbox, track_id, attributes, frame_id,'
        " provenance, created_at FROM detections WHERE camera_id = $1"
        ' AND ($2::timestamptz IS NULL OR "timestamp" >= $2) AND ($3::timestamptz IS NULL OR "timestamp" < $3)'
        ' AND ($4::text IS NULL OR label = $4) ORDER BY "timestamp" DESC, id LIMIT $5',
        camera_id, start, end, label, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def detection_stats(db: Executor) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM ai_tasks WHERE enabled) AS tasks,"
        " (SELECT count(*) FROM detections) AS detections,"
        " (SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL) AS unfanned"
    )
    return {k: int(v) for k, v in dict(row).items()} if row else {}


# --- workers, leases, ticket secret ---------------------------------------------------------------
async def heartbeat_worker(db: Executor, worker_id: str, api_key_id: str) -> str | None:
    """Record the heartbeat; returns the credential the id was bound to before when it differs."""
    previous = await db.fetchval("SELECT api_key_id FROM ai_workers WHERE worker_id = $1", worker_id)
    await db.execute(
        "INSERT INTO ai_workers (worker_id, api_key_id, last_seen) VALUES ($1, $2, now())"
        " ON CONFLICT (worker_id) DO UPDATE SET api_key_id = EXCLUDED.api_key_id, last_seen = now()",
        worker_id, api_key_id,
    )  # fmt: skip
    return previous if previous is not None and previous != api_key_id else None


async def live_workers(db: Executor, api_key_id: str, live_s: float) -> list[str]:
    await db.execute("DELETE FROM ai_workers WHERE last_seen < now() - make_interval(secs => $1)", live_s)
    rows = await db.fetch(
        "SELECT worker_id FROM ai_workers WHERE api_key_id = $1 AND last_seen >= now() - make_interval(secs => $2)"
        " ORDER BY worker_id",
        api_key_id, live_s,
    )  # fmt: skip
    return [r["worker_id"] for r in rows]


async def claim_leases(
    db: Executor, *, lease_id: str, api_key_id: str, worker_id: str, tasks: Sequence[dict[str, Any]], ttl_s: float
) -> list[str]:
    """Claim or renew each task; a claim wins only over an expired lease or the caller's own."""
    if not tasks:
        return []
    rows = await db.fetch(
        "INSERT INTO ai_task_leases (task_id, lease_id, api_key_id, worker_id, camera_id, task_type, expires_at)"
        " SELECT t, $1, $2, $3, c, ty, now() + make_interval(secs => $7)"
        " FROM unnest($4::text[], $5::text[], $6::text[]) AS x(t, c, ty)"
        " ON CONFLICT (task_id) DO UPDATE SET lease_id = EXCLUDED.lease_id, api_key_id = EXCLUDED.api_key_id,"
        " worker_id = EXCLUDED.worker_id, renewed_at = now(), expires_at = EXCLUDED.expires_at,"
        " acquired_at = CASE WHEN ai_task_leases.api_key_id = EXCLUDED.api_key_id"
        "   AND ai_task_leases.worker_id = EXCLUDED.worker_id THEN ai_task_leases.acquired_at ELSE now() END"
        " WHERE ai_task_leases.expires_at < now()"
        "    OR (ai_task_leases.api_key_id = EXCLUDED.api_key_id AND ai_task_leases.worker_id = EXCLUDED.worker_id)"
        " RETURNING task_id",
        lease_id, api_key_id, worker_id, [t["id"] for t in tasks], [t["camera_id"] for t in tasks],
        [t["task_type"] for t in tasks], ttl_s,
    )  # fmt: skip
    return [r["task_id"] for r in rows]


async def release_lease(db: Executor, lease_id: str, api_key_id: str) -> int:
    result = await db.execute(
        "DELETE FROM ai_task_leases WHERE lease_id = $1 AND api_key_id = $2", lease_id, api_key_id
    )
    return int(result.split()[-1])


async def live_lease(db: Executor, task_id: str, api_key_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT l.task_id, l.camera_id, l.task_type, l.worker_id, t.enabled AND c.enabled AS active"
        " FROM ai_task_leases l JOIN ai_tasks t ON t.id = l.task_id JOIN cameras c ON c.id = l.camera_id"
        " WHERE l.task_id = $1 AND l.api_key_id = $2 AND l.expires_at > now()",
        task_id, api_key_id,
    )  # fmt: skip
    return dict(row) if row else None


FRAME_TICKET_KEY = "frame-ticket-key"  # sealing purpose of perception_secrets.frame_ticket


async def frame_ticket_secret(db: Executor) -> bytes:
    """The cluster's ticket key: created once (random 32 bytes), then read by every API process."""
    await db.execute(
        "INSERT INTO perception_secrets (name, value) VALUES ('frame_ticket', $1) ON CONFLICT DO NOTHING",
        seal_bytes(secrets.token_bytes(32), FRAME_TICKET_KEY),  # sealed under HELDAR_SECRET_KEY when set
    )
    value = await db.fetchval("SELECT value FROM perception_secrets WHERE name = 'frame_ticket'")
    return open_bytes(bytes(value), FRAME_TICKET_KEY)


async def live_lease_tasks(db: Executor, api_key_id: str) -> set[str]:
    """Tasks one credential holds a live lease on (any of its workers)."""
    rows = await db.fetch("SELECT task_id FROM ai_task_leases WHERE api_key_id = $1 AND expires_at > now()", api_key_id)
    return {r["task_id"] for r in rows}
