-- Storage: retention, evidence locks and incidents, expiring read locks, quotas, runtime overrides,
-- sweep outcomes, and the indexes that keep sweeps and window reads cheap at millions of segments.

-- Evidence: a durable hold (never deleted by any retention step) and an optional incident tag.
ALTER TABLE segments ADD COLUMN evidence_locked boolean NOT NULL DEFAULT false;
ALTER TABLE segments ADD COLUMN incident_id text CHECK (incident_id IS NULL OR length(incident_id) BETWEEN 1 AND 128);
-- The latest expiry of the live read locks covering this row (derived from segment_read_locks). Retention
-- deletes only rows where this is NULL or past: a reader that bumps it first makes the conditional delete
-- skip the row (PostgreSQL re-checks the WHERE clause against the updated row).
ALTER TABLE segments ADD COLUMN read_lock_until timestamptz;

-- Counted, expiring read locks: one row per holder; a dead reader's lock simply expires.
CREATE TABLE segment_read_locks (
    id          text PRIMARY KEY,
    camera_id   text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    segment_ids text[] NOT NULL,
    holder      text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX segment_read_locks_expiry ON segment_read_locks (expires_at);
CREATE INDEX segment_read_locks_segments ON segment_read_locks USING gin (segment_ids);

ALTER TABLE cameras ADD COLUMN storage_quota_bytes bigint CHECK (storage_quota_bytes IS NULL OR storage_quota_bytes > 0);

-- Runtime overrides of the retention caps (one row at most); NULL means "use the environment".
CREATE TABLE retention_overrides (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_recordings_gb double precision CHECK (max_recordings_gb IS NULL OR max_recordings_gb > 0),
    min_free_disk_gb  double precision CHECK (min_free_disk_gb IS NULL OR min_free_disk_gb >= 0),
    updated_by       text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per sweep (pruned with the event log); the newest is /api/v1/system's "last sweep".
CREATE TABLE retention_sweeps (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean NOT NULL,
    leader      text NOT NULL,
    outcome     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX retention_sweeps_finished ON retention_sweeps (finished_at DESC);

-- Cumulative deletions by reason (the retention counters in /metrics, the same from every API process).
CREATE TABLE retention_totals (
    reason   text PRIMARY KEY,
    segments bigint NOT NULL DEFAULT 0,
    bytes    bigint NOT NULL DEFAULT 0
);

-- Oldest-first candidates per camera (age, quota, cap, floor), index-only for the sizes.
CREATE INDEX segments_deletable ON segments (camera_id, start_time, id) INCLUDE (size_bytes, end_time)
    WHERE NOT evidence_locked;
CREATE INDEX segments_evidence ON segments (camera_id) INCLUDE (size_bytes) WHERE evidence_locked;
CREATE INDEX segments_incident ON segments (incident_id, start_time) WHERE incident_id IS NOT NULL;
-- Window reads: the longest segment of a camera bounds how far before a window's start a segment that
-- overlaps it can begin, so (camera_id, start_time) range scans stay proportional to the window.
CREATE INDEX segments_camera_span ON segments (camera_id, (end_time - start_time));
CREATE INDEX segments_window ON segments (camera_id, start_time, id) INCLUDE (end_time);

-- Row retention scans by age.
CREATE INDEX detections_created ON detections (created_at);
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX consumer_fanout_fanned ON consumer_fanout (fanned_at);
CREATE INDEX zone_events_created ON zone_events (created_at);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
CREATE INDEX recording_gaps_resolved ON recording_gaps (created_at) WHERE fill_state <> 'pending';
CREATE INDEX sessions_expiry ON sessions (expires_at);
