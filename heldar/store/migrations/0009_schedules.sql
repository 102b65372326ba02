-- Recording schedules: weekly windows in which a 'scheduled' camera records (and in which a
-- 'scheduled_event' camera keeps all its footage). Times are seconds after local midnight in the IANA
-- zone named on the row: days 0 = Monday .. 6 = Sunday; end_s < start_s wraps past midnight into the
-- next day; end_s = 86400 is midnight at the end of the day.
ALTER TABLE cameras DROP CONSTRAINT cameras_record_mode_check;
ALTER TABLE cameras ADD CONSTRAINT cameras_record_mode_check
    CHECK (record_mode IN ('continuous', 'event', 'scheduled', 'scheduled_event'));

CREATE TABLE camera_schedules (
    id         text PRIMARY KEY,
    camera_id  text NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
    days       smallint[] NOT NULL,
    start_s    integer NOT NULL CHECK (start_s >= 0 AND start_s < 86400),
    end_s      integer NOT NULL CHECK (end_s >= 0 AND end_s <= 86400),
    timezone   text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(days) BETWEEN 1 AND 7 AND days <@ ARRAY[0, 1, 2, 3, 4, 5, 6]::smallint[]),
    CHECK (start_s <> end_s % 86400 OR (start_s = 0 AND end_s = 86400)),
    UNIQUE (camera_id, days, start_s, end_s, timezone)
);
CREATE INDEX camera_schedules_camera ON camera_schedules (camera_id);
