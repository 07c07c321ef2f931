"""Gmail API v1 emulator (served at the paths google-api-python-client calls with an overridden endpoint)."""
