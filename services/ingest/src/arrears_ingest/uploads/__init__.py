"""CSV / XLSX uploads through the API (the fallback while the sheet is unavailable)."""
