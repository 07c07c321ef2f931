"""Google Sheets access for ingest (the PME master sheet)."""

from .client import (
    BoundedBackOffHTTPClient,
    EndpointRewriteAdapter,
    StaticTokenCredentials,
    load_credentials,
    open_sheets_client,
)

__all__ = [
    "BoundedBackOffHTTPClient",
    "EndpointRewriteAdapter",
    "StaticTokenCredentials",
    "load_credentials",
    "open_sheets_client",
]
