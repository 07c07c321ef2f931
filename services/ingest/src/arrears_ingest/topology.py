"""What ingest reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="ingest",
    summary="Reads the PME master sheet and payment feeds; announces account changes; writes contact facts back to the sheet.",
    consumes=(
        topics.MESSAGE_SENT,
        topics.REPLY_RECEIVED,
    ),
    produces=(
        topics.ACCOUNT_CHANGED,
        topics.INGEST_REJECTED,
    ),
    order=10,
)
