"""Every dispatcher's place on the broker: the same reads and writes, whatever its channel."""

from __future__ import annotations

from .. import topics
from ..topology import LagScaling, ServiceTopology


def dispatcher_topology(name: str, summary: str, *, order: int, max_replicas: int = 4) -> ServiceTopology:
    """Consumes notices (its channel's), replies (opt-outs, holds) and outcomes (a bounce reported later
    marks an address invalid); produces outcomes. Scales on lag up to `max_replicas`: every replica shares
    one provider rate limit, so more pods do not send faster."""
    return ServiceTopology(
        name=name,
        summary=summary,
        consumes=(topics.NOTICE_DUE, topics.REPLY_RECEIVED, topics.MESSAGE_SENT),
        produces=(topics.MESSAGE_SENT,),
        scaling=LagScaling(
            min_replicas=1,
            max_replicas=max_replicas,
            lag_per_replica=200,
            why="every replica shares one provider rate limit: more pods do not send faster",
        ),
        order=order,
    )
