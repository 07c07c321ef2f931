"""What escalation reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="escalation",
    summary="Opens cases and tasks for people, keeps promises and overrides.",
    consumes=(
        topics.ACCOUNT_CHANGED,
        topics.MESSAGE_SENT,
        topics.REPLY_RECEIVED,
        topics.OVERRIDES,  # the portal's promises, plans and accepted settlement offers (tracked as promises)
        topics.ACCOUNT_SCORED,  # the model's scores: recovery team for high risk, work list order (scoring/)
    ),
    produces=(
        topics.CASE_ESCALATED,
        topics.OVERRIDES,
        topics.TEAM_CALENDARS,
    ),
    order=50,
)
