"""Perception: sampled frames become detections that consumers (zone engine, apps) act on."""
