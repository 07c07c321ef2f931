"""CSV / XLSX uploads through the API (the sheet's fallback, seed 002)."""
