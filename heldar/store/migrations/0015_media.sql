-- Media plane: exported clips (expired by the retention sweep) and HLS playback sessions (which hold a
-- read lock on their segments until they end or expire).
CREATE TABLE media_clips (
    id                text PRIMARY KEY,
    camera_id         text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    file_name         text NOT NULL UNIQUE,
    from_time         timestamptz NOT NULL,
    to_time           timestamptz NOT NULL,
    requested_seconds double precision NOT NULL,
    covered_seconds   double precision NOT NULL,
    gaps              jsonb NOT NULL DEFAULT '[]',
    size_bytes        bigint NOT NULL,
    segment_count     integer NOT NULL,
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    CHECK (to_time > from_time)
);
CREATE INDEX media_clips_expiry ON media_clips (expires_at);

CREATE TABLE playback_sessions (
    id          text PRIMARY KEY,
    camera_id   text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    owner_id    text NOT NULL,
    token_hash  text NOT NULL,
    lock_id     text NOT NULL,
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    segment_ids text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX playback_sessions_expiry ON playback_sessions (expires_at);
