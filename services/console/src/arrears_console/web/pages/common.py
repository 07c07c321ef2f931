"""What every page module shares: the upstream client, redirects after a form, and permission gates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from arrears_shared.service import Context
from fastapi.responses import RedirectResponse

from ..upstream import Upstreams


def upstreams(ctx: Context) -> Upstreams:
    found = ctx.extra.get("upstreams")
    if not isinstance(found, Upstreams):
        raise RuntimeError("console upstreams are not set up (on_start)")
    return found


def back(path: str, *, flash: str = "", error: str = "") -> RedirectResponse:
    """POST-redirect-GET with a one-line message."""
    params = {k: v for k, v in (("flash", flash), ("error", error)) if v}
    return RedirectResponse(path + (("?" + urlencode(params)) if params else ""), status_code=303)


PRIORITY_ORDER = {"critical": 0, "high": 1, "normal": 2, "low": 3}


def by_priority_then_sla(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tasks, key=lambda t: (PRIORITY_ORDER.get(t["priority"], 9), t["sla_due_at"], t["task_id"]))


ContextGetter = Callable[[], Context]
