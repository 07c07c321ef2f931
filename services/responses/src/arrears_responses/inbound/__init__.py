"""What a channel's provider reports, whatever the channel: customer replies (`replies.record_inbound`),
failures of messages the provider had accepted (`failures.record_failure` / `publish_failure`), and the
inbound adapters of installed channel packages mounted as routes (`adapters.inbound_router`)."""
