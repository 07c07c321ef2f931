"""The hosted payment page: plain HTML, one form, no scripts (the debtor may be on a slow phone)."""

from __future__ import annotations

from html import escape
from typing import Any

DECLINED_CARDS = frozenset({"4000000000000002", "4000000000009995"})  # Stripe's test cards for declines


def money(minor: int, currency: str) -> str:
    return f"{minor / 100:,.2f} {currency.upper()}"


def _shell(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:28rem;margin:0 auto;padding:1rem;color:#1a1a1a}"
        "label{display:block;margin:.75rem 0 .25rem}input{width:100%;box-sizing:border-box;padding:.6rem;"
        "font-size:1rem}button{margin-top:1rem;width:100%;padding:.8rem;font-size:1.05rem;background:#635bff;"
        "color:#fff;border:0;border-radius:6px}.err{color:#b00020}.amount{font-size:1.6rem;font-weight:600}"
        "</style></head><body>" + body + "</body></html>"
    )


def pay_page(session: dict[str, Any], error: str | None = None) -> str:
    items = session.get("line_items", {}).get("data", [])
    what = escape(items[0]["description"]) if items else "Payment"
    cancel = session.get("cancel_url")
    err = f"<p class='err' role='alert'>{escape(error)}</p>" if error else ""
    back = f"<p><a href='{escape(cancel)}'>Cancel and go back</a></p>" if cancel else ""
    return _shell(
        "Pay",
        f"<h1>Pay</h1><p>{what}</p>"
        f"<p class='amount' id='amount'>{money(session['amount_total'], session['currency'])}</p>{err}"
        f"<form method='post' action='/c/pay/{escape(session['id'])}'>"
        "<label for='card'>Card number</label>"
        "<input id='card' name='card_number' inputmode='numeric' autocomplete='cc-number' "
        "value='4242 4242 4242 4242' required>"
        "<label for='exp'>Expiry (MM/YY)</label><input id='exp' name='exp' value='12/34' required>"
        "<label for='cvc'>CVC</label><input id='cvc' name='cvc' inputmode='numeric' value='123' required>"
        f"<button type='submit'>Pay {money(session['amount_total'], session['currency'])}</button></form>"
        f"{back}<p><small>Checkout emulator — test mode.</small></p>",
    )


def message_page(title: str, text: str) -> str:
    return _shell(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")
