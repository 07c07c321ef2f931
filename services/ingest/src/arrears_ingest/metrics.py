"""Ingest-specific Prometheus metrics. Labels are small enumerations only (source, outcome)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DEGRADED = Gauge(
    "arrears_ingest_degraded",
    "1 while a source cannot be read (the last good snapshot is kept)",
    ["source"],
)
QUOTA_WAIT = Counter(
    "arrears_ingest_quota_wait_seconds_total",
    "Seconds a source spent waiting out the Sheets per-minute quota (429)",
    ["source"],
)
LAST_SUCCESS = Gauge(
    "arrears_ingest_last_success_timestamp_seconds",
    "Unix time of the last successful ingest run of a source",
    ["source"],
)
ROWS = Counter(
    "arrears_ingest_rows_total",
    "Source rows seen by ingest runs, by outcome (accepted / rejected)",
    ["source", "outcome"],
)
CHANGES = Counter(
    "arrears_ingest_changes_total",
    "account-changed events emitted by ingest runs, by change kind",
    ["source", "change"],
)
RUN_SECONDS = Histogram(
    "arrears_ingest_run_seconds",
    "Duration of one ingest run (read + validate + diff + commit)",
    ["source"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
WRITEBACK_PENDING = Gauge(
    "arrears_ingest_writeback_pending",
    "Row outcomes queued for write-back to the sheet, plus accounts whose contact facts the sheet does not "
    "show yet (grows while the sheet is unavailable)",
)
WRITEBACK_CELLS = Counter(
    "arrears_ingest_writeback_cells_total",
    "Cells written back to the sheet (Arrears Status / Reason, contact facts)",
)
