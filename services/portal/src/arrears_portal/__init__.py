"""The debtor's self-service portal: a notice's personal link, verification, then one account's page."""
