"""The payment gateway's Checkout Sessions API (Stripe's wire format), through httpx.

Only what the portal needs: create a ``mode=payment`` session for one amount and retrieve it. The account id
travels in ``client_reference_id``, ``metadata[account_id]`` and ``payment_intent_data[metadata][account_id]``
— the fields ingest's Stripe webhook reads — so the payment lands on the right account whichever event
(``checkout.session.completed`` or ``payment_intent.succeeded``) arrives first. Creating is retried on
timeouts, 429 and 5xx with the same ``Idempotency-Key``, so a retry can never make a second session.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

RETRIES = 2


class CheckoutUnavailable(RuntimeError):
    """The gateway could not be reached or refused the request; nothing was charged."""


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None
    amount_total: int
    currency: str
    status: str
    payment_status: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CheckoutSession:
        return cls(
            id=str(body["id"]),
            url=body.get("url"),
            amount_total=int(body.get("amount_total") or 0),
            currency=str(body.get("currency") or "").upper(),
            status=str(body.get("status") or ""),
            payment_status=str(body.get("payment_status") or ""),
        )


def create_params(
    *,
    account_id: str,
    amount_minor: int,
    currency: str,
    description: str,
    success_url: str,
    cancel_url: str,
    locale: str,
    visit: str,
) -> dict[str, str]:
    """The form body of the create call (Stripe's bracket notation)."""
    return {
        "mode": "payment",
        "line_items[0][price_data][currency]": currency.lower(),
        "line_items[0][price_data][unit_amount]": str(amount_minor),
        "line_items[0][price_data][product_data][name]": description,
        "line_items[0][quantity]": "1",
        "client_reference_id": account_id,
        "metadata[account_id]": account_id,
        "metadata[portal_visit]": visit,
        "payment_intent_data[metadata][account_id]": account_id,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "locale": locale,
    }


class CheckoutClient:
    def __init__(self, base_url: str, secret_key: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        self.timeout_s = timeout_s

    async def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        delay = 0.2
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s) as http:
            for attempt in range(RETRIES + 1):
                try:
                    r = await http.request(
                        method, path, headers={**self._headers, **kw.pop("headers", {})}, **kw
                    )
                except httpx.HTTPError as e:
                    problem = f"{type(e).__name__}"
                else:
                    if r.status_code < 300:
                        body = r.json()
                        if not isinstance(body, dict) or "id" not in body:
                            raise CheckoutUnavailable("unreadable answer")
                        return body
                    if r.status_code != 429 and r.status_code < 500:
                        raise CheckoutUnavailable(f"refused: {r.status_code} {r.text[:200]}")
                    problem = f"HTTP {r.status_code}"
                if attempt < RETRIES:
                    await asyncio.sleep(delay * (1 + random.random()))
                    delay *= 2
        raise CheckoutUnavailable(problem)

    async def create(self, params: dict[str, str], idempotency_key: str) -> CheckoutSession:
        body = await self._call(
            "POST", "/v1/checkout/sessions", data=params, headers={"Idempotency-Key": idempotency_key}
        )
        return CheckoutSession.from_json(body)

    async def retrieve(self, session_id: str) -> CheckoutSession:
        return CheckoutSession.from_json(await self._call("GET", f"/v1/checkout/sessions/{session_id}"))
