"""Settings every dispatcher shares (`ARREARS_DISPATCH_*`)."""

from __future__ import annotations

from pydantic import Field

from ..links import LinkSettings
from ..settings import ServiceSettings


# LinkSettings: the render step puts each notice's personal portal link in it (arrears_shared.links)
class DispatchSettings(ServiceSettings, LinkSettings):
    dispatch_workers: int = Field(4, ge=1, description="Concurrent send workers per replica")
    dispatch_batch_size: int = Field(
        50,
        ge=1,
        description="Due deliveries one worker claims per transaction and sends concurrently (sized down"
        " to the limiter slots available within the next second)",
    )
    dispatch_max_in_flight: int = Field(
        32,
        ge=1,
        description="Provider calls one replica makes at the same time, over all workers (match the"
        " client's connection pool)",
    )
    dispatch_max_attempts: int = Field(
        6, ge=1, description="Provider attempts (transient failures) before a delivery is failed"
    )
    dispatch_backoff_base_s: float = Field(2.0, gt=0, description="First retry delay after a transient error")
    dispatch_backoff_max_s: float = Field(300.0, gt=0, description="Cap of the retry delay")
    dispatch_in_doubt_after_s: float = Field(
        30.0, gt=0, description="A delivery left in 'sending' this long is reconciled with the provider"
    )
    dispatch_reconcile_interval_s: float = Field(
        10.0, gt=0, description="How often in-doubt rows are checked"
    )
    dispatch_send_timeout_s: float = Field(
        20.0, gt=0, description="Hard limit of one provider call; must stay below the in-doubt age"
    )
    dispatch_idle_poll_s: float = Field(0.5, gt=0, description="Worker sleep when nothing is due")
    dispatch_breaker_failures: int = Field(
        5, ge=1, description="Consecutive provider outage errors (5xx, timeouts) that open a route's circuit"
    )
    dispatch_breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open circuit stays open before one trial send"
    )
    dispatch_dlq_group: str | None = Field(
        None,
        description="Consumer group naming the DLQ topic failed notices go to (notice-due.<group>.dlq);"
        " default: the service name",
    )
    dispatch_failover_after_s: float | None = Field(
        None,
        gt=0,
        description="Channel failover: once every route of this channel has been down (circuit open) this"
        " long, queued notices whose step falls back to one of ARREARS_DISPATCH_FAILOVER_CHANNELS go by that"
        " channel instead (the queued notice is settled suppressed 'failed_over:<channel>' in the"
        " transaction that emits the new one); unset = notices wait for the channel to recover",
    )
    dispatch_failover_channels: tuple[str, ...] = Field(
        ("email",),
        description="Channels a queued notice may fail over to, in the order of its step's fallback list"
        " (JSON list)",
    )
    dispatch_failover_batch_size: int = Field(
        200, ge=1, description="Queued notices switched per failover transaction"
    )
    dispatch_failover_interval_s: float = Field(
        1.0, gt=0, description="How often the failover task looks at the channel's circuits"
    )
