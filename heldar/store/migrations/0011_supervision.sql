-- Supervision: who held the supervisor lock and how each run ended, so a restart can tell a clean stop
-- (gap cause heldar_stopped) from a crash (heldar_crashed) or a takeover (failover); and ANR fill slots as
-- leases in the database, so they outlive any one actor.
CREATE TABLE supervisor_runs (
    id           text PRIMARY KEY,
    instance     text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    took_over    boolean NOT NULL DEFAULT false
);
CREATE INDEX supervisor_runs_started ON supervisor_runs (started_at DESC);

CREATE TABLE anr_slot_leases (
    id          text PRIMARY KEY,
    holder      text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
