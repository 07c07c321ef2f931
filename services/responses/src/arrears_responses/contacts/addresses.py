"""Addresses as the contact index keys them, by the channel's address kind (arrears_shared.channels): a phone
number in E.164-ish form, an email address in lower case. A channel this installation does not know keeps
its address as given (trimmed)."""

from __future__ import annotations

import re

from arrears_shared.channels import kind_of

_PHONE_JUNK = re.compile(r"[\s().-]")


def normalize_phone(raw: str) -> str:
    """Canonical E.164-ish form used as the contact index key (`+1 (415) 555-0100` -> `+14155550100`)."""
    p = _PHONE_JUNK.sub("", raw.strip())
    if p.startswith("00"):
        p = "+" + p[2:]
    return p


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def normalize_address(channel: str, raw: str) -> str:
    """`raw` as the contact index of `channel` keys it."""
    kind = kind_of(channel)
    if kind == "phone":
        return normalize_phone(raw)
    if kind == "email":
        return normalize_email(raw)
    return raw.strip()
