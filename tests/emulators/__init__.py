"""Emulator tests (QUO, Gmail, Sheets)."""
