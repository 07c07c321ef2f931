"""What segmenter reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import LagScaling, ServiceTopology

TOPOLOGY = ServiceTopology(
    name="segmenter",
    summary="Ages accounts, applies the dunning policy and overrides, fires durable timers into notices.",
    consumes=(
        topics.ACCOUNT_CHANGED,
        topics.REPLY_RECEIVED,
        topics.MESSAGE_SENT,
        topics.OVERRIDES,
        topics.ACCOUNT_SCORED,  # the model's scores: campaign band, best channel and hour (scores/)
    ),
    produces=(
        topics.NOTICE_DUE,
        topics.ACCOUNT_CHANGED,  # PaymentRetryChanged: a failed payment's retry state (payments/retries.py)
    ),
    scaling=LagScaling(
        min_replicas=1,
        max_replicas=12,
        lag_per_replica=500,
        why="one replica per account-changed partition at most",
    ),
    order=20,
)
