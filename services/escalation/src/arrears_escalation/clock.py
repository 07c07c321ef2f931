"""The shared injectable clock (arrears_shared.clock), re-exported where this service imports it."""

from arrears_shared.clock import Clock

__all__ = ["Clock"]
