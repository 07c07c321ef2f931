"""One security layer for every service: who is calling (API keys, OIDC bearer tokens, console sessions),
what their roles allow (`roles.py`, data in one place), and a gate that authenticates every route not
declared public. See docs/security.md."""

from .access import Access, UndeclaredRouteError, current_principal, public, requires
from .principal import Principal
from .roles import PERMISSIONS, ROLE_PERMISSIONS, ROLES, Role

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Access",
    "Principal",
    "Role",
    "UndeclaredRouteError",
    "current_principal",
    "public",
    "requires",
]
