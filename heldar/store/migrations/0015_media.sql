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

-- Tamper-evident footage: the indexer's SHA-256 of each file, chained per camera in the order segments were
-- indexed (back-fill included, its source says so): chain_hash = sha256(prev chain_hash | file hash | camera |
-- start | end | source). chain_seq numbers a camera's entries 1, 2, 3...; a hole in it is a deleted entry.
ALTER TABLE segments ADD COLUMN sha256 text CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE segments ADD COLUMN chain_seq bigint;
ALTER TABLE segments ADD COLUMN chain_hash text;
CREATE UNIQUE INDEX segments_chain ON segments (camera_id, chain_seq) WHERE chain_seq IS NOT NULL;
CREATE INDEX segments_unchained ON segments (camera_id, created_at, start_time, id) WHERE chain_seq IS NULL AND sha256 IS NOT NULL;

-- The server's Ed25519 signing key for clip manifests (one row; the private key never leaves the database).
CREATE TABLE media_signing_key (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    private_key bytea NOT NULL,
    public_key  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
