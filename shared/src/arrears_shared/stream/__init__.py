"""Kafka stream processing with effectively-once semantics on any Kafka-compatible broker.

A consumer is a pipeline read top to bottom (see `runner.StreamRunner`):
decode -> inbox (drop duplicates) -> handler (one DB transaction per batch) -> outbox -> commit offsets,
with bounded retries and a dead-letter policy for what cannot be processed.
"""
