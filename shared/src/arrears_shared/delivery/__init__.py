"""Generic delivery engine shared by the dispatchers (ARCHITECTURE §3 External sends, §4 rate limits).

A dispatcher implements a `Channel` (render, send, reconcile) and gets the rest from here: the delivery
state machine in Postgres, the consumer handler (notice-due / opt-out replies), the send workers, the
limiter shared by all replicas and in-doubt reconciliation.
"""

from .breaker import CircuitBreaker
from .channel import (
    CannotReconcile,
    Channel,
    DeliveryRow,
    Rendered,
    Route,
    SendResult,
    ThreadRef,
    Undelivered,
)
from .engine import DeliveryEngine
from .gate import GateDecision, allow_all, compliance_gate
from .settings import DispatchSettings
from .tables import create_delivery_tables, delivery_tables_ddl

__all__ = [
    "CannotReconcile",
    "Channel",
    "CircuitBreaker",
    "Route",
    "ThreadRef",
    "Undelivered",
    "DeliveryEngine",
    "DeliveryRow",
    "DispatchSettings",
    "GateDecision",
    "allow_all",
    "compliance_gate",
    "Rendered",
    "SendResult",
    "create_delivery_tables",
    "delivery_tables_ddl",
]
