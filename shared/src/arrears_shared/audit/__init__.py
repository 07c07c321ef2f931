"""The hash-chained audit log every service writes its state-changing API calls to (see chain.py)."""

from .chain import VerifyReport, append, list_entries, record, verify

__all__ = ["VerifyReport", "append", "list_entries", "record", "verify"]
