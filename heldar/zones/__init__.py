"""Zones: geometry validation and the zone engine (a ``DetectionConsumer``) that turns tracks into events."""
