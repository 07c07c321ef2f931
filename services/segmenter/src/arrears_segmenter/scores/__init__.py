"""The model's scores (issue #20): the latest `account-scored` per account, and how the segmenter uses it —
the band campaigns select on while the score is fresh, the channel tried first and the hour a step is
placed at (inside the compliance window)."""
