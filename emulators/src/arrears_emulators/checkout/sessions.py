"""Checkout Session objects: validating a create request and the session's life (open -> complete/expired).

Follows https://docs.stripe.com/api/checkout/sessions/create for the parameters we serve: ``mode=payment``,
``line_items`` with ``price_data`` (``currency``, ``unit_amount``, ``product_data[name]``) and ``quantity``,
``currency``, ``client_reference_id``, ``customer_email``, ``metadata[...]``,
``payment_intent_data[metadata][...]``, ``success_url`` (``{CHECKOUT_SESSION_ID}`` is filled in),
``cancel_url``, ``expires_at``, ``locale``. Emulator shorthand (not Stripe): ``amount`` (minor units) with
``currency`` instead of ``line_items`` makes one line item.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

SESSION_TTL_S = 24 * 3600  # Stripe's default expiry
MIN_TTL_S = 30 * 60
CURRENCY = re.compile(r"^[a-z]{3}$")
MAX_METADATA_KEYS = 50


class ParamError(ValueError):
    """A request Stripe answers 400 ``invalid_request_error`` with ``param``."""

    def __init__(self, param: str, message: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _int(value: Any, param: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,15}", value):
        raise ParamError(param, f"Invalid integer: {value}", "parameter_invalid_integer")
    return int(value)


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ParamError(param, "Invalid hash")
    if len(value) > MAX_METADATA_KEYS:
        raise ParamError(param, "Metadata can have at most 50 keys")
    for k, v in value.items():
        if len(k) > 40 or not isinstance(v, str) or len(v) > 500:
            raise ParamError(f"{param}[{k}]", "Metadata keys are at most 40 characters, values at most 500")
    return {k: v for k, v in value.items() if v != ""}


def _line_items(params: dict[str, Any], currency: str | None) -> tuple[list[dict[str, Any]], str]:
    raw = params.get("line_items")
    if raw is None and "amount" in params:
        if currency is None:
            raise ParamError("currency", "Missing required param: currency.", "parameter_missing")
        raw = [{"price_data": {"currency": currency, "unit_amount": params["amount"]}, "quantity": "1"}]
        raw[0]["price_data"]["product_data"] = {"name": params.get("description") or "Payment"}
    if not isinstance(raw, list) or not raw:
        raise ParamError("line_items", "Missing required param: line_items.", "parameter_missing")
    items: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        p = f"line_items[{i}]"
        if not isinstance(item, dict):
            raise ParamError(p, "Invalid hash")
        if "price" in item:
            raise ParamError(f"{p}[price]", f"No such price: '{item['price']}'", "resource_missing")
        data = item.get("price_data")
        if not isinstance(data, dict):
            raise ParamError(f"{p}[price_data]", "Missing required param: price_data.", "parameter_missing")
        cur = str(data.get("currency", "")).lower()
        if not CURRENCY.match(cur):
            raise ParamError(f"{p}[price_data][currency]", "Invalid currency")
        unit = _int(data.get("unit_amount"), f"{p}[price_data][unit_amount]")
        if unit < 0:
            raise ParamError(
                f"{p}[price_data][unit_amount]", "This value must be greater than or equal to 0."
            )
        quantity = _int(item.get("quantity", "1"), f"{p}[quantity]")
        if quantity < 1:
            raise ParamError(f"{p}[quantity]", "This value must be greater than or equal to 1.")
        product_raw = data.get("product_data")
        product: dict[str, Any] = product_raw if isinstance(product_raw, dict) else {}
        name = str(product.get("name") or "")
        if not name:
            raise ParamError(f"{p}[price_data][product_data][name]", "Missing required param: name.")
        items.append(
            {
                "id": "li_" + secrets.token_hex(12),
                "object": "item",
                "amount_subtotal": unit * quantity,
                "amount_total": unit * quantity,
                "currency": cur,
                "description": name,
                "quantity": quantity,
                "price": {"object": "price", "currency": cur, "unit_amount": unit, "type": "one_time"},
            }
        )
    currencies = {it["currency"] for it in items}
    if len(currencies) != 1 or (currency is not None and currency not in currencies):
        raise ParamError("line_items", "All line items must use the same currency as the session.")
    return items, currencies.pop()


def build(
    params: dict[str, Any], *, min_amount: int, hosted_base: str, now: int | None = None
) -> dict[str, Any]:
    """A new open session from decoded create parameters. Raises `ParamError`."""
    now = int(time.time()) if now is None else now
    mode = params.get("mode")
    if not mode:
        raise ParamError("mode", "Missing required param: mode.", "parameter_missing")
    if mode != "payment":
        raise ParamError("mode", f"This emulator serves mode=payment only, not {mode!r}.")
    currency = params.get("currency")
    if currency is not None:
        currency = str(currency).lower()
        if not CURRENCY.match(currency):
            raise ParamError("currency", "Invalid currency")
    items, currency = _line_items(params, currency)
    total = sum(it["amount_total"] for it in items)
    if total < min_amount:
        raise ParamError(
            "line_items",
            f"The Checkout Session's total amount must be at least {min_amount}.",
            "amount_too_small",
        )
    expires_at = now + SESSION_TTL_S
    if "expires_at" in params:
        expires_at = _int(params["expires_at"], "expires_at")
        if not now + MIN_TTL_S <= expires_at <= now + SESSION_TTL_S:
            raise ParamError("expires_at", "expires_at must be between 30 minutes and 24 hours from now.")
    for url_param in ("success_url", "cancel_url"):
        value = params.get(url_param)
        if value is not None and not re.match(r"^https?://", str(value)):
            raise ParamError(url_param, "Not a valid URL", "url_invalid")
    ref = params.get("client_reference_id")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
        raise ParamError("client_reference_id", "client_reference_id is at most 200 characters")
    pi_raw = params.get("payment_intent_data")
    pi_data: dict[str, Any] = pi_raw if isinstance(pi_raw, dict) else {}
    sid = "cs_test_" + secrets.token_urlsafe(42).replace("-", "A").replace("_", "b")
    return {
        "id": sid,
        "object": "checkout.session",
        "amount_subtotal": total,
        "amount_total": total,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": ref or None,
        "created": now,
        "currency": currency,
        "customer": None,
        "customer_email": params.get("customer_email") or None,
        "expires_at": expires_at,
        "line_items": {"object": "list", "data": items, "has_more": False},
        "livemode": False,
        "locale": params.get("locale") or None,
        "metadata": _metadata(params.get("metadata"), "metadata"),
        "mode": "payment",
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "success_url": params.get("success_url"),
        "ui_mode": "hosted",
        "url": f"{hosted_base}/c/pay/{sid}",
        "_payment_intent_metadata": _metadata(pi_data.get("metadata"), "payment_intent_data[metadata]"),
    }


def public(session: dict[str, Any]) -> dict[str, Any]:
    """The session as the API returns it (``line_items`` only when expanded, as Stripe does)."""
    return {k: v for k, v in session.items() if not k.startswith("_") and k != "line_items"}


def refresh(session: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """An open session past its ``expires_at`` is expired (Stripe expires them within a few minutes)."""
    now = int(time.time()) if now is None else now
    if session["status"] == "open" and now >= session["expires_at"]:
        session.update(status="expired", url=None)
    return session


def redirect_url(template: str, session_id: str) -> str:
    return template.replace("{CHECKOUT_SESSION_ID}", session_id)
