"""Benchmarks: each prints JSON (all raw samples) and a short table, against a baseline taken in the same run."""
