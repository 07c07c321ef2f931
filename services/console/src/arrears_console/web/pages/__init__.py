"""The console's pages, one module per area; each module's `router(get_context)` is a RouterFactory."""
