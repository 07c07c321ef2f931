"""What dispatcher-email reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared.topology import dispatcher_topology

TOPOLOGY = dispatcher_topology(
    "dispatcher-email",
    "Sends email notices through Gmail, exactly once, within the law; reports each outcome.",
    order=31,
)
