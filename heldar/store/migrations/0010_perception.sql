-- Perception, wave 2: zone time per frame stream, and at-least-once fan-out.
--
-- A frame stream is one producer of frames for a camera (a kernel task, or a worker task type); the zone
-- engine keeps its watermark per (camera, stream), so two tasks on one camera each count. The old
-- camera-wide cursor stays as the floor for streams that have no cursor of their own yet.
CREATE TABLE zone_stream_cursors (
    camera_id     text NOT NULL,
    stream        text NOT NULL,
    last_frame_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, stream)
);

-- The stream a zone event was derived on (NULL for events written before streams), so a restarted engine
-- resumes each open visit on its own stream.
ALTER TABLE zone_events ADD COLUMN stream text;

-- consumer_fanout rows now record a finished delivery (written after the consumer returned), not a claim
-- taken before it: a consumer that fails, or a crash mid-delivery, leaves the frame for the replay.
COMMENT ON TABLE consumer_fanout IS 'frames each detection consumer has finished (at-least-once delivery)';

-- Evidence: the JPEG of the frame of an enter, dwell or crossing, served under /media/evidence.
ALTER TABLE zone_events ADD COLUMN evidence_url text;
