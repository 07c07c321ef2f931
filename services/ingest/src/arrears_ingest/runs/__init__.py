"""Ingest runs: one read of a source, validated, diffed and committed with its events."""
