"""What portal reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared import topics
from arrears_shared.topology import ServiceTopology

TOPOLOGY = ServiceTopology(
    name="portal",
    summary="The debtor's self-service page behind each notice's link: verifies the visitor, shows what is"
    " owed, takes payments, promises, instalment plans, accepted settlement offers, disputes and opt-outs;"
    " reports link clicks.",
    consumes=(topics.ACCOUNT_CHANGED, topics.OVERRIDES),  # overrides: supervisors' settlement offers
    produces=(topics.LINK_CLICKED, topics.OVERRIDES),
    order=55,
)
