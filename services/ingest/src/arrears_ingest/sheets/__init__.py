"""Google Sheets access for ingest (the PME master sheet)."""
