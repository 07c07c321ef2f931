"""Contact facts: the latest contact, reply, intent and promise per account, written back to the sheet."""
