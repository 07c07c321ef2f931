"""Classified provider errors, shared by every provider client.

How a caller should react:

- `ProviderRateLimited` — the provider refused because of a rate limit; nothing was sent. Pause the shared
  limiter for `retry_after_s` and retry.
- `ProviderQuotaExhausted` (a `ProviderRateLimited`) — a daily quota is used up; `retry_after_s` runs to the
  time the provider names (Gmail's sending limit is a rolling 24 hours: the time is in its error message).
- `ProviderTransientError` — 5xx, connect failures and timeouts where the request certainly did not take
  effect (or the call is idempotent); retry with backoff, count towards the circuit breaker.
- `ProviderPermanentError` — the provider rejected this request (invalid number, malformed message ...);
  retrying the same request cannot succeed.
- `ProviderAuthError` (a `ProviderPermanentError`) — credentials were rejected. Permanent for the request, but
  a configuration problem rather than a problem with the notice.
- `ProviderInDoubt` — a non-idempotent request (a send) may or may not have been accepted: a timeout after
  the request was written, or a connection dropped before the whole response arrived. Reconcile with the
  provider before deciding to resend.

The classes are siblings under `ProviderError` on purpose: `except ProviderTransientError` must never catch
an in-doubt send and blindly retry it.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of all classified provider failures."""

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    @property
    def retryable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, status={self.status!r})"


class ProviderRateLimited(ProviderError):
    """The provider throttled the request (HTTP 429 or a 403 rate-limit reason). Nothing was sent."""

    def __init__(
        self,
        retry_after_s: float,
        message: str = "rate limited",
        *,
        provider: str | None = None,
        status: int | None = 429,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after_s = max(0.0, float(retry_after_s))
        self.reason = reason

    @property
    def retryable(self) -> bool:
        return True


class ProviderQuotaExhausted(ProviderRateLimited):
    """A daily quota (e.g. Gmail's per-user sending limit) is exhausted until `retry_after_s` from now."""


class ProviderTransientError(ProviderError):
    """5xx, connection failure or timeout where the request did not take effect. Retry with backoff."""

    @property
    def retryable(self) -> bool:
        return True


class ProviderPermanentError(ProviderError):
    """The provider rejected the request; resending it unchanged cannot succeed."""

    def __init__(
        self,
        reason: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason, provider=provider, status=status)
        self.reason = reason
        self.code = code


class ProviderAuthError(ProviderPermanentError):
    """Credentials were rejected (401, or 403 without a rate-limit reason)."""


class ProviderInDoubt(ProviderError):
    """A send may have been accepted by the provider; reconcile before resending."""
