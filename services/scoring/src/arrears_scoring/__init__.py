"""Scoring: payment, drop-out and settlement-recovery models learnt from the platform's own history."""
