"""What scoring reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="scoring",
    summary="Learns payment, drop-out and settlement recovery from the platform's own history (accounts,"
    " messages, replies, overrides, link clicks) and publishes each account's daily score with its reasons"
    " and the best channel and hour to contact it.",
    consumes=(
        topics.ACCOUNT_CHANGED,
        topics.MESSAGE_SENT,
        topics.REPLY_RECEIVED,
        topics.OVERRIDES,
        topics.LINK_CLICKED,
    ),
    produces=(topics.ACCOUNT_SCORED,),
    order=45,
)
