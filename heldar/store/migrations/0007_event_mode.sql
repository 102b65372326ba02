-- Event-mode recording: an event-mode camera records continuously into a short buffer; only footage
-- inside an event window [trigger - pre_roll, trigger + post_roll] is kept, the rest is pruned.
ALTER TABLE segments ADD COLUMN kept boolean NOT NULL DEFAULT true;
CREATE INDEX segments_unkept ON segments (camera_id, end_time) WHERE NOT kept;

CREATE TABLE event_windows (
    id         text PRIMARY KEY,
    camera_id  text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    trigger_at timestamptz NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at >= starts_at)
);
CREATE INDEX event_windows_camera ON event_windows (camera_id, ends_at DESC);
