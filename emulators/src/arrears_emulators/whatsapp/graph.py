"""Graph API error bodies and the WhatsApp error codes the emulator answers with.

Every error is Graph's envelope (https://developers.facebook.com/docs/graph-api/guides/error-handling):
``{"error": {"message": "(#<code>) <title>", "type": "OAuthException", "code": <code>, "error_subcode"?,
"error_data": {"messaging_product": "whatsapp", "details": "..."}, "fbtrace_id": "..."}}``. Codes, titles and
HTTP statuses follow Meta's table (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes):
the throughput and pair rate limits (130429, 131056) are answered with HTTP 400 as that table documents (a
client must classify by ``code``, never by the status alone); ``rate_limit_status`` in the config makes them
429 instead, to check a client copes with either.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse


@dataclass(frozen=True, slots=True)
class GraphCode:
    code: int
    title: str
    status: int
    details: str
    subcode: int | None = None
    type: str = "OAuthException"


CODES: dict[int, GraphCode] = {
    c.code: c
    for c in (
        GraphCode(0, "AuthException", 401, "We were unable to authenticate the app user."),
        GraphCode(1, "API Unknown", 400, "Invalid request or possible server error."),
        GraphCode(2, "API Service", 503, "Temporary due to downtime or due to being overloaded."),
        GraphCode(4, "API Too Many Calls", 400, "The app has reached its API call rate limit."),
        GraphCode(10, "Permission Denied", 403, "Permission is either not granted or has been removed."),
        GraphCode(
            100,
            "Invalid parameter",
            400,
            "The request included one or more unsupported or misspelled parameters.",
        ),
        GraphCode(
            190, "Invalid OAuth access token - Cannot parse access token", 401, "Invalid OAuth access token."
        ),
        GraphCode(
            130429,
            "Rate limit hit",
            400,
            "Message failed to send because there were too many messages sent from this phone number in a short"
            " period of time",
            subcode=2494055,
        ),
        GraphCode(131000, "Something went wrong", 500, "Message failed to send due to an unknown error."),
        GraphCode(
            131008, "Required parameter is missing", 400, "The request is missing a required parameter."
        ),
        GraphCode(131009, "Parameter value is not valid", 400, "One or more parameter values are invalid."),
        GraphCode(131016, "Service unavailable", 503, "A service is temporarily unavailable."),
        GraphCode(
            131021, "Recipient cannot be sender", 400, "Sender and recipient phone number is the same."
        ),
        GraphCode(
            131026,
            "Message undeliverable",
            400,
            "Message Undeliverable. The recipient is not a WhatsApp user or has not accepted the latest terms.",
        ),
        GraphCode(
            131047,
            "Re-engagement message",
            400,
            "Message failed to send because more than 24 hours have passed since the customer last replied to"
            " this number.",
            subcode=2494081,
        ),
        GraphCode(131051, "Unsupported message type", 400, "Unsupported message type."),
        GraphCode(
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            400,
            "Message failed to send because there were too many messages sent from this phone number to the same"
            " phone number in a short period of time.",
            subcode=2494079,
        ),
        GraphCode(
            132000,
            "Number of parameters does not match the expected number of params",
            400,
            "The number of variable parameter values included in the request did not match the number of"
            " variable parameters defined in the template.",
            subcode=2494002,
        ),
        GraphCode(
            132001,
            "Template name does not exist in the translation",
            404,
            "The template does not exist in the specified language or the template has not been approved.",
            subcode=2494073,
        ),
        GraphCode(132015, "Template is Paused", 400, "Template is paused due to low quality."),
        GraphCode(
            132016, "Template is Disabled", 400, "Template has been paused too many times due to low quality."
        ),
    )
}

RATE_LIMIT_CODES = frozenset({4, 130429, 131056})
AUTH_CODES = frozenset({0, 190})


def fbtrace_id() -> str:
    return secrets.token_urlsafe(16)[:22]


def error_body(code: int, details: str | None = None, *, message: str | None = None) -> dict[str, Any]:
    known = CODES.get(code) or GraphCode(code, "Error", 400, "")
    plain = code in AUTH_CODES  # Graph's token errors carry no "(#code)" prefix and no error_data
    error: dict[str, Any] = {
        "message": message or (known.title if plain else f"(#{code}) {known.title}"),
        "type": known.type,
        "code": code,
    }
    if not plain:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or known.details}
    if known.subcode is not None:
        error["error_subcode"] = known.subcode
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


def default_status(code: int) -> int:
    known = CODES.get(code)
    return known.status if known else 400


def graph_error(
    code: int, details: str | None = None, *, status: int | None = None, message: str | None = None
) -> JSONResponse:
    """A Graph error response (``WWW-Authenticate`` on 401, as Graph sends it)."""
    response = JSONResponse(
        error_body(code, details, message=message), status_code=status or default_status(code)
    )
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = (
            'OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"'
        )
    return response


def webhook_error(code: int, details: str | None = None) -> dict[str, Any]:
    """An item of ``statuses[].errors`` (and ``value.errors``) in a webhook."""
    known = CODES.get(code) or GraphCode(code, "Error", 400, "")
    return {
        "code": code,
        "title": known.title,
        "message": known.title,
        "error_data": {"details": details or known.details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
