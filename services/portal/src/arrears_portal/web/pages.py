"""Rendering: autoescaped Jinja2 templates in the visitor's language, and the headers every page carries
(no caching, no referrer — the link's token is in the URL — no framing, no scripts at all)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from .i18n import LANGUAGES, TEXT

_ENV = Environment(
    loader=PackageLoader("arrears_portal.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def content_security_policy(form_targets: tuple[str, ...] = ()) -> str:
    """No scripts, no framing; forms post to the portal itself and, on the account page, to the payment
    gateway's hosted checkout (browsers check `form-action` on the redirect a form post answers too)."""
    targets = " ".join(("'self'", *form_targets))
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action {targets}; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": content_security_policy(),
}


def render(
    template: str,
    lang: str,
    brand: str,
    contact: str,
    *,
    status: int = 200,
    other_lang_href: str | None = None,
    **values: Any,
) -> HTMLResponse:
    other = next(x for x in LANGUAGES if x != lang)
    html = _ENV.get_template(template).render(
        lang=lang,
        t=TEXT[lang],
        brand=brand,
        contact=contact,
        other_lang=other,
        other_lang_href=other_lang_href,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
