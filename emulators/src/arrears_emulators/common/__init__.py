"""Plumbing shared by every emulator: ledger, fault injection, rate limiter, control API and server runner.

An emulator builds one `EmulatorCore`, calls `install_control(app, core)`, and in each API handler calls
``await core.gate(operation, key=..., cost=...)`` after its own auth check, answering 429 / the injected 5xx
as its provider would, and a `DroppedResponse` after processing when ``drop_after`` is set.
"""

from arrears_emulators.common.control import control_router, install_control
from arrears_emulators.common.core import DroppedResponse, EmulatorCore, GateResult, StatsView
from arrears_emulators.common.faults import FaultInjector, FaultOutcome, FaultSpec, FaultsUpdate, FaultsView
from arrears_emulators.common.ledger import Ledger, LedgerEntry, LedgerView
from arrears_emulators.common.ratelimit import LimitsConfig, LimitsUpdate, RateLimiter, retry_after_header
from arrears_emulators.common.server import EmulatorServer, bind_socket, serve_main

__all__ = [
    "DroppedResponse",
    "EmulatorCore",
    "EmulatorServer",
    "FaultInjector",
    "FaultOutcome",
    "FaultSpec",
    "FaultsUpdate",
    "FaultsView",
    "GateResult",
    "Ledger",
    "LedgerEntry",
    "LedgerView",
    "LimitsConfig",
    "LimitsUpdate",
    "RateLimiter",
    "StatsView",
    "bind_socket",
    "control_router",
    "install_control",
    "retry_after_header",
    "serve_main",
]
