-- ANR back-fill ledger: one row per fill attempt (outcome, cause, seconds recovered).
CREATE TABLE anr_attempts (
    id                text PRIMARY KEY,
    gap_id            text NOT NULL REFERENCES recording_gaps(id) ON DELETE CASCADE,
    camera_id         text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    outcome           text NOT NULL CHECK (outcome IN ('filled', 'failed')),
    error             text,
    file_name         text,
    seconds_recovered double precision NOT NULL DEFAULT 0
);
CREATE INDEX anr_attempts_camera ON anr_attempts (camera_id, started_at DESC);
CREATE INDEX anr_attempts_gap ON anr_attempts (gap_id);
