"""The authenticated caller of a request: a person (OIDC token or console session) or a machine (API key)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .roles import PII_PERMISSION, permissions_of

PrincipalKind = Literal["api_key", "token", "session"]


@dataclass(frozen=True)
class Principal:
    """Who is calling. `name` is what the audit log records as the actor; it always comes from the
    credential (the key's name, the token's name claim), never from a request body."""

    name: str
    roles: frozenset[str]
    kind: PrincipalKind
    subject: str  # key id, token `sub`, or session's principal subject
    team: str | None = None
    permissions: frozenset[str] = field(default=frozenset(), compare=False)
    csrf_token: str | None = field(default=None, compare=False, repr=False)  # console sessions only

    def __post_init__(self) -> None:
        if not self.permissions:
            object.__setattr__(self, "permissions", permissions_of(self.roles))

    def with_csrf(self, token: str) -> Principal:
        return replace(self, csrf_token=token)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def sees_pii(self) -> bool:
        return PII_PERMISSION in self.permissions

    @property
    def role(self) -> str:
        """The highest role held, for the audit log's `role` column."""
        for r in ("admin", "supervisor", "collector", "service", "viewer"):
            if r in self.roles:
                return r
        return "none"
