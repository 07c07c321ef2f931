"""The routes x roles matrix, from the apps themselves (`arrears security matrix`, docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import FastAPI

from .access import declared_access, effective_routes
from .roles import ROLE_PERMISSIONS, ROLES


@dataclass(frozen=True)
class RouteAccess:
    service: str
    method: str
    path: str
    permission: str | None  # None: public
    reason: str

    def allows(self, role: str) -> bool:
        return self.permission is None or self.permission in ROLE_PERMISSIONS[role]  # type: ignore[index]


def route_table(service: str, app: FastAPI) -> list[RouteAccess]:
    out = []
    for route in effective_routes(app):
        declared = declared_access(route)
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            acc = declared[0]
            out.append(RouteAccess(service, method, str(route.path), acc.permission, acc.reason))
    return out


def render_markdown(tables: Iterable[list[RouteAccess]]) -> str:
    head = "| service | method | path | permission | " + " | ".join(ROLES) + " |"
    rule = "|---|---|---|---|" + "---|" * len(ROLES)
    lines = [head, rule]
    for table in tables:
        for r in table:
            perm = f"`{r.permission}`" if r.permission else "public"
            marks = " | ".join("✓" if r.allows(role) else "·" for role in ROLES)
            lines.append(f"| {r.service} | {r.method} | `{r.path}` | {perm} | {marks} |")
    return "\n".join(lines) + "\n"


def render_public(tables: Iterable[list[RouteAccess]]) -> str:
    """One line per public route; a route every service has is listed once."""
    all_tables = list(tables)
    services: dict[tuple[str, str, str], list[str]] = {}
    for t in all_tables:
        for r in t:
            if r.permission is None:
                services.setdefault((r.method, r.path, r.reason), []).append(r.service)
    lines = []
    for (method, path, reason), where in services.items():
        who = "every service" if len(where) == len(all_tables) else ", ".join(where)
        lines.append(f"- `{method} {path}` ({who}): {reason}")
    return "\n".join(lines) + "\n"
