"""What responses reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="responses",
    summary="Reads replies (QUO webhooks, Gmail), classifies them, answers opt-outs and reports delivery failures.",
    consumes=(topics.MESSAGE_SENT, topics.TEAM_CALENDARS),
    produces=(
        topics.REPLY_RECEIVED,
        topics.MESSAGE_SENT,
        topics.NOTICE_DUE,
    ),
    order=40,
)
