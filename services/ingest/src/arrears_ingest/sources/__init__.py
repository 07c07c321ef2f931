"""Where ingest reads accounts from (the PME master sheet; uploads and payments come later)."""
