"""Masking personal data for principals without `accounts.read` (viewers): enough to tell rows apart, not
enough to identify or contact anyone."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """`Maria del Carmen Lopez` -> `M. d. C. L.`"""
    return " ".join(p[0] + "." for p in name.split() if p) or "—"


def mask_phone(phone: str) -> str:
    """`+15551234567` -> `+1•••••••67`: country code and the last two digits."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 4:
        return "•" * len(digits)
    return ("+" if phone.startswith("+") else "") + digits[0] + "•" * (len(digits) - 3) + "".join(digits[-2:])


def mask_email(email: str) -> str:
    """`maria.lopez@example.com` -> `m•••@example.com`"""
    local, at, domain = email.partition("@")
    return (local[:1] + "•••" + at + domain) if at else "•••"
