"""What dispatcher-email reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import LagScaling, ServiceTopology

TOPOLOGY = ServiceTopology(
    name="dispatcher-email",
    summary="Sends email notices through Gmail, exactly once, within the law; reports each outcome.",
    consumes=(
        topics.NOTICE_DUE,
        topics.REPLY_RECEIVED,
        topics.MESSAGE_SENT,
    ),
    produces=(topics.MESSAGE_SENT,),
    scaling=LagScaling(
        min_replicas=1,
        max_replicas=4,
        lag_per_replica=200,
        why="every replica shares one provider rate limit: more pods do not send faster",
    ),
    order=31,
)
