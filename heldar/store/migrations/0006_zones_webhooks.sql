-- Zones, zone events and occupancy; the event stream cursor and NOTIFY; webhooks; event-mode recording.

CREATE TABLE zones (
    id            text PRIMARY KEY,
    camera_id     text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('region', 'line')),
    polygon       jsonb NOT NULL,
    dwell_seconds double precision NOT NULL DEFAULT 0 CHECK (dwell_seconds >= 0),
    labels        jsonb NOT NULL DEFAULT '[]'::jsonb,
    severity      text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    config        jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (camera_id, name)
);

-- No foreign keys: the history outlives a deleted zone. The unique key makes a replayed frame a no-op
-- (the engine stamps events with frame times, so the same input gives the same rows).
CREATE TABLE zone_events (
    id            text PRIMARY KEY,
    camera_id     text NOT NULL,
    zone_id       text NOT NULL,
    zone_name     text NOT NULL,
    track_id      text NOT NULL,
    event_type    text NOT NULL CHECK (event_type IN ('enter', 'exit', 'dwell', 'cross_ab', 'cross_ba')),
    label         text,
    "timestamp"   timestamptz NOT NULL,
    dwell_seconds double precision,
    synthetic     boolean NOT NULL DEFAULT false,
    event_id      uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (camera_id, zone_id, track_id, event_type, "timestamp")
);
CREATE INDEX zone_events_camera_ts ON zone_events (camera_id, "timestamp" DESC);
CREATE INDEX zone_events_zone_ts ON zone_events (zone_id, "timestamp" DESC);
CREATE INDEX zone_events_ts ON zone_events ("timestamp" DESC);

CREATE TABLE zone_occupancy (
    zone_id    text PRIMARY KEY REFERENCES zones(id) ON DELETE CASCADE,
    camera_id  text NOT NULL,
    count      integer NOT NULL DEFAULT 0 CHECK (count >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The newest frame time the zone engine processed per camera: a restarted engine ignores older batches.
CREATE TABLE zone_engine_cursors (
    camera_id     text PRIMARY KEY,
    last_frame_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Events: a monotonically increasing cursor (the SSE id and the webhook cursor), and one NOTIFY per row
-- whoever writes it (recorders, ANR, the zone engine, other processes).
ALTER TABLE events ADD COLUMN seq bigserial;
CREATE UNIQUE INDEX events_seq ON events (seq);
CREATE INDEX events_severity_created ON events (severity, created_at DESC);

CREATE FUNCTION heldar_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('heldar_events', NEW.seq::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION heldar_notify_event();

CREATE TABLE webhook_subscriptions (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    url             text NOT NULL,
    event_types     jsonb NOT NULL DEFAULT '["*"]'::jsonb,
    min_severity    text NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info', 'warning', 'critical')),
    secret          text,
    enabled         boolean NOT NULL DEFAULT true,
    cursor_seq      bigint NOT NULL DEFAULT 0,
    cursor_at       timestamptz,
    attempts        integer NOT NULL DEFAULT 0,  -- failed attempts on the event after the cursor
    next_attempt_at timestamptz,
    last_error      text,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id          text PRIMARY KEY,
    webhook_id  text NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_id    text,
    event_seq   bigint,
    event_type  text NOT NULL,
    attempt     integer NOT NULL,
    ok          boolean NOT NULL,
    status_code integer,
    error       text,
    gave_up     boolean NOT NULL DEFAULT false,
    duration_ms integer,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at DESC);

-- Event-mode recording (the recorder wiring is separate): a camera records continuously or on triggers.
ALTER TABLE cameras ADD COLUMN record_mode text NOT NULL DEFAULT 'continuous'
    CHECK (record_mode IN ('continuous', 'event'));
ALTER TABLE cameras ADD COLUMN pre_roll_seconds integer NOT NULL DEFAULT 10
    CHECK (pre_roll_seconds BETWEEN 0 AND 300);
ALTER TABLE cameras ADD COLUMN post_roll_seconds integer NOT NULL DEFAULT 30
    CHECK (post_roll_seconds BETWEEN 0 AND 3600);
