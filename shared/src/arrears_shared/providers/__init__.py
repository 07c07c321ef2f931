"""Provider-facing helpers shared by the dispatchers and the responses service.

`errors` classifies every failure of an external provider call (QUO, Gmail, ...) into a small set of
exceptions with a clear retry meaning; `quo_signature` verifies signed QUO (OpenPhone) webhooks.
"""

from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTransientError,
)
from arrears_shared.providers.quo_signature import InvalidSignature, verify_openphone_signature

__all__ = [
    "InvalidSignature",
    "ProviderAuthError",
    "ProviderError",
    "ProviderInDoubt",
    "ProviderPermanentError",
    "ProviderQuotaExhausted",
    "ProviderRateLimited",
    "ProviderTransientError",
    "verify_openphone_signature",
]
