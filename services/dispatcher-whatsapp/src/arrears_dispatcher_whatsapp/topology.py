"""What dispatcher-whatsapp reads and writes on the broker (see arrears_shared.topology)."""

from arrears_shared.topology import dispatcher_topology

TOPOLOGY = dispatcher_topology(
    "dispatcher-whatsapp",
    "Sends WhatsApp notices through the WhatsApp Business Cloud API, at most once, within the law;"
    " reports each outcome.",
    order=32,
)
