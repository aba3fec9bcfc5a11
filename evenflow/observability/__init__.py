"""Counters, the access log and traces; cheap on the hot path, rendered off it."""
