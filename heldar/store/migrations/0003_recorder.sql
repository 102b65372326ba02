-- Recorder bookkeeping: restarts by cause (supervisor), and the stop that began the current outage.
ALTER TABLE camera_status ADD COLUMN restarts_by_cause jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE camera_status ADD COLUMN last_stop_at timestamptz;
CREATE INDEX segments_camera_file ON segments (camera_id, file_name);
