"""Wire models of the QUO (OpenPhone) public API v1, as far as the emulator serves it.

Followed: https://www.quo.com/docs/mdx/api-reference/messages/list-messages (message resource, list
parameters: ``phoneNumberId`` is the ``PN…`` id, ``participants`` E.164, ``maxResults`` 1..100 default 10,
``nextPageToken``), https://www.quo.com/docs/mdx/api-reference/phone-numbers (``GET /v1/phone-numbers``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

E164_PATTERN = r"^\+[1-9]\d{1,14}$"
DOCS_URL = "https://www.openphone.com/docs/mdx/api-reference/introduction"
PN_ID_PATTERN = r"^PN[A-Za-z0-9]+$"
# The dated generation of the API (https://www.quo.com/docs/2026-03-30/versioning): unversioned paths, the
# version in a required ``Quo-Api-Version`` header (400 without it).
API_VERSION_HEADER = "Quo-Api-Version"
SUPPORTED_API_VERSIONS = frozenset({"2026-03-30"})


class SendMessageBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    content: str = Field(min_length=1, max_length=1600)
    from_: str = Field(alias="from", description="E.164 number or phone-number id (PN...)")
    to: list[str] = Field(min_length=1, max_length=1)
    user_id: str | None = Field(None, alias="userId")
    set_inbox_status: Literal["done"] | None = Field(None, alias="setInboxStatus")


class Message(BaseModel):
    """The message resource (``data`` of ``POST /v1/messages`` and items of ``GET /v1/messages``)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    to: list[str]
    from_: str = Field(alias="from")
    text: str
    phone_number_id: str = Field(alias="phoneNumberId")
    direction: Literal["incoming", "outgoing"]
    user_id: str | None = Field(None, alias="userId")
    # v1 message statuses; a message the carrier refused ends "undelivered" (there is no such webhook event:
    # the new webhook system reports it as ``message.failed``, legacy webhooks not at all)
    status: Literal["queued", "sent", "delivered", "undelivered", "received"]
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    def webhook_object(self, conversation_id: str) -> dict[str, Any]:
        """The message as webhooks carry it: the REST fields plus ``object``, ``body`` (the text, as QUO's
        webhook payloads name it), ``media`` and ``conversationId``."""
        data = self.wire()
        data.update({"object": "message", "body": self.text, "media": [], "conversationId": conversation_id})
        return data


class MessageEnvelope(BaseModel):
    data: dict[str, Any]


class MessageList(BaseModel):
    data: list[dict[str, Any]]
    total_items: int = Field(alias="totalItems")
    next_page_token: str | None = Field(None, alias="nextPageToken")

    model_config = ConfigDict(populate_by_name=True)


class ErrorDetail(BaseModel):
    path: str
    message: str
    value: Any = None


class QuoError(BaseModel):
    message: str
    code: str
    status: int
    docs: str = DOCS_URL
    title: str
    errors: list[ErrorDetail] = Field(default_factory=list)


class InboundSms(BaseModel):
    """Body of ``POST /_emulator/inbound``: a customer's reply."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", pattern=E164_PATTERN)
    to: str = Field(description="our number (E.164) or phone-number id")
    content: str = Field(min_length=1, max_length=1600)


class PhoneNumber(BaseModel):
    """Item of ``GET /v1/phone-numbers`` (the fields we use)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    number: str
    formatted_number: str = Field(alias="formattedNumber")
    name: str = "Arrears"


class WebhookTarget(BaseModel):
    """Body of ``PUT /_emulator/webhook``."""

    url: str | None
    signing_key: str | None = Field(None, description="base64 signing key (unchanged if omitted)")
    system: Literal["legacy", "standard"] | None = Field(
        None, description="legacy (openphone-signature) or standard (Standard Webhooks); unchanged if omitted"
    )
    secret: str | None = Field(
        None, description="whsec_ secret of the standard system (unchanged if omitted)"
    )


class NumberSets(BaseModel):
    """Body of ``PUT /_emulator/numbers``: replace the invalid / undelivered recipient sets."""

    invalid: list[str] | None = None
    undelivered: list[str] | None = None
