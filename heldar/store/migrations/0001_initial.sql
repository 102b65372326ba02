-- heldar schema v1: registry, recorder state, segment index, gaps, events, auth, audit.
-- All timestamps are timestamptz and written in UTC.

CREATE TABLE cameras (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    vendor                  text NOT NULL DEFAULT 'generic' CHECK (vendor IN ('hikvision', 'dahua', 'generic')),
    model                   text,
    address                 text,
    rtsp_port               integer NOT NULL DEFAULT 554 CHECK (rtsp_port BETWEEN 1 AND 65535),
    username                text,
    password                text,
    main_stream_url         text,
    sub_stream_url          text,
    record_stream           text NOT NULL DEFAULT 'main' CHECK (record_stream IN ('main', 'sub')),
    rtsp_transport          text NOT NULL DEFAULT 'tcp' CHECK (rtsp_transport IN ('tcp', 'udp')),
    segment_seconds         integer NOT NULL DEFAULT 60 CHECK (segment_seconds BETWEEN 2 AND 3600),
    retention_hours         integer NOT NULL DEFAULT 24 CHECK (retention_hours >= 1),
    record_audio            boolean NOT NULL DEFAULT false,
    anr_enabled             boolean NOT NULL DEFAULT false,
    anr_replay_url_template text,
    priority                integer NOT NULL DEFAULT 100,
    enabled                 boolean NOT NULL DEFAULT true,
    record_enabled          boolean NOT NULL DEFAULT true,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE camera_status (
    camera_id        text PRIMARY KEY REFERENCES cameras(id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'unknown'
                     CHECK (state IN ('unknown', 'disabled', 'connecting', 'recording', 'offline', 'error')),
    last_segment_at  timestamptz,
    last_started_at  timestamptz,
    reconnect_count  bigint NOT NULL DEFAULT 0,
    restart_count    bigint NOT NULL DEFAULT 0,
    segments_written bigint NOT NULL DEFAULT 0,
    fps_observed     double precision,
    bitrate_kbps     double precision,
    last_error       text,
    last_error_code  text,
    recorder_pid     integer,
    recorder_node    text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segments (
    id          text PRIMARY KEY,
    camera_id   text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    file_name   text NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    duration_s  double precision NOT NULL,
    codec       text,
    width       integer,
    height      integer,
    fps         double precision,
    size_bytes  bigint NOT NULL,
    source      text NOT NULL DEFAULT 'live' CHECK (source IN ('live', 'backfill')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (camera_id, file_name),
    CHECK (end_time >= start_time)
);
CREATE INDEX segments_camera_start ON segments (camera_id, start_time);
CREATE INDEX segments_camera_end ON segments (camera_id, end_time);

CREATE TABLE recording_gaps (
    id              text PRIMARY KEY,
    camera_id       text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    gap_start       timestamptz NOT NULL,
    gap_end         timestamptz NOT NULL,
    gap_seconds     double precision NOT NULL,
    cause           text,
    fill_state      text NOT NULL DEFAULT 'pending' CHECK (fill_state IN ('pending', 'filled', 'failed')),
    fill_attempts   integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    filled_at       timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (camera_id, gap_start),
    CHECK (gap_end > gap_start)
);
CREATE INDEX recording_gaps_state ON recording_gaps (fill_state, gap_start DESC);

CREATE TABLE events (
    id          uuid PRIMARY KEY,
    camera_id   text,
    event_type  text NOT NULL,
    severity    text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    "timestamp" timestamptz NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_timestamp ON events ("timestamp" DESC);
CREATE INDEX events_camera_timestamp ON events (camera_id, "timestamp" DESC);
CREATE INDEX events_type_timestamp ON events (event_type, "timestamp" DESC);

CREATE TABLE users (
    id                 text PRIMARY KEY,
    username           text NOT NULL UNIQUE,
    password_hash      text NOT NULL,
    role               text NOT NULL DEFAULT 'viewer'
                       CHECK (role IN ('admin', 'manager', 'guard', 'viewer', 'integration')),
    display_name       text,
    active             boolean NOT NULL DEFAULT true,
    failed_login_count integer NOT NULL DEFAULT 0,
    locked_until       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id           text PRIMARY KEY,            -- SHA-256 hex of the token; the token itself is never stored
    user_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    key_hash      text NOT NULL UNIQUE,
    key_prefix    text NOT NULL,
    role          text NOT NULL DEFAULT 'integration'
                  CHECK (role IN ('admin', 'manager', 'guard', 'viewer', 'integration')),
    capabilities  jsonb,
    scope_kind    text NOT NULL DEFAULT 'all' CHECK (scope_kind IN ('all', 'cameras')),
    scope_cameras jsonb NOT NULL DEFAULT '[]'::jsonb,
    active        boolean NOT NULL DEFAULT true,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id                text PRIMARY KEY,
    actor             text NOT NULL,
    actor_name        text,
    role              text,
    action            text NOT NULL,
    target_type       text,
    target_id         text,
    detail            jsonb NOT NULL DEFAULT '{}'::jsonb,
    subject_camera_id text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_created ON audit_log (created_at DESC);
CREATE INDEX audit_actor ON audit_log (actor, created_at DESC);
CREATE INDEX audit_camera ON audit_log (subject_camera_id, created_at DESC);
