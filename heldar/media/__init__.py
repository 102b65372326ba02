"""Media plumbing: the ffmpeg binary, recorder command lines, segment files and probing."""
