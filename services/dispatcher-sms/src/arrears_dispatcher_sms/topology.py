"""What dispatcher-sms reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared.topology import dispatcher_topology

TOPOLOGY = dispatcher_topology(
    "dispatcher-sms",
    "Sends SMS notices through QUO, exactly once, within the law; reports each outcome.",
    order=30,
)
