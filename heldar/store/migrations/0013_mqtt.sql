-- The MQTT sink's cursor: the last event (events.seq) the broker acknowledged, per topic prefix.
-- One API process at a time publishes: it works the row under FOR UPDATE SKIP LOCKED.
CREATE TABLE mqtt_cursors (
    sink        text PRIMARY KEY,
    cursor_seq  bigint NOT NULL,
    cursor_at   timestamptz,
    published   bigint NOT NULL DEFAULT 0,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
