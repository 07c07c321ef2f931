"""Provider-facing helpers shared by the dispatchers and the responses service.

`errors` classifies every failure of an external provider call (QUO, Gmail, ...) into a small set of
exceptions with a clear retry meaning; `quo_signature` verifies signed QUO (OpenPhone) webhooks.
"""
