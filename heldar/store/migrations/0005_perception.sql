-- heldar schema v5: perception — AI tasks, detections with an idempotent outbox, at-most-once fan-out
-- ledger, HTTP workers and their task leases, and the shared frame-ticket secret.

CREATE TABLE ai_tasks (
    id             text PRIMARY KEY,
    camera_id      text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    task_type      text NOT NULL CHECK (task_type ~ '^[a-z0-9_]{1,64}$'),
    stream_profile text NOT NULL DEFAULT 'sub' CHECK (stream_profile IN ('sub', 'main')),
    fps            double precision NOT NULL DEFAULT 5 CHECK (fps >= 0.1 AND fps <= 30),
    width          integer NOT NULL DEFAULT 1280 CHECK (width BETWEEN 160 AND 3840),
    config         jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (camera_id, task_type, stream_profile)
);

-- One row per ingested frame: (camera_id, frame_id) is the ingest idempotency key.
CREATE TABLE outbox (
    seq             bigserial PRIMARY KEY,
    topic           text NOT NULL DEFAULT 'detections',
    camera_id       text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    frame_id        text NOT NULL,
    task_type       text NOT NULL,
    captured_at     timestamptz NOT NULL,
    detection_count integer NOT NULL DEFAULT 0,
    provenance      text NOT NULL,
    produced_by     text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    fanned_out_at   timestamptz,
    UNIQUE (camera_id, frame_id)
);
CREATE INDEX outbox_unfanned ON outbox (seq) WHERE fanned_out_at IS NULL;

CREATE TABLE detections (
    id          text PRIMARY KEY,
    camera_id   text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    task_type   text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    label       text,
    confidence  real,
    bbox        real[],
    track_id    text,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    frame_id    text NOT NULL,
    provenance  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX detections_camera_ts ON detections (camera_id, "timestamp" DESC);
CREATE INDEX detections_frame ON detections (camera_id, frame_id);

-- At-most-once delivery: a consumer claims (consumer, camera, frame) before it is handed the batch.
CREATE TABLE consumer_fanout (
    consumer  text NOT NULL,
    camera_id text NOT NULL,
    frame_id  text NOT NULL,
    fanned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, camera_id, frame_id)
);

CREATE TABLE ai_workers (
    worker_id  text PRIMARY KEY,
    api_key_id text NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ai_task_leases (
    task_id     text PRIMARY KEY REFERENCES ai_tasks(id) ON DELETE CASCADE,
    lease_id    text NOT NULL,
    api_key_id  text NOT NULL,
    worker_id   text NOT NULL,
    camera_id   text NOT NULL,
    task_type   text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ai_task_leases_lease ON ai_task_leases (lease_id);

CREATE TABLE perception_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
