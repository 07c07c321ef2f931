"""Supervisor pages of the console (campaigns, policies) against the real segmenter and escalation."""
