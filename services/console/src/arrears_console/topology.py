"""What console reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="console",
    summary="The people's console: read models of every event, dead-letter browsing and replay.",
    consumes=topics.EVENT_TOPICS,
    produces=(),
    replays_dead_letters=True,
    order=60,
)
