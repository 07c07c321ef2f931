"""Roles and permissions, as data, in one place.

A route declares the *permission* it needs (`requires("approvals.decide")`); this table says which roles hold
it. `docs/security.md` prints the resulting routes x roles matrix, generated from every service's routes.

Roles:
- `viewer`: aggregates (aging, summaries, campaign and collection figures, KPI reports); personal data masked.
- `collector`: works accounts: account details and timelines, notes, promises, pause / resume / snooze,
  disputes, own tasks and cases.
- `supervisor`: everything a collector does, plus approvals, overrides of every kind, campaigns, policies,
  do-not-contact, settlement offers, reassignment, sheet runs and uploads, the audit log, the working-set
  export.
- `admin`: everything a supervisor does, plus API keys (revoke-all included), dead-letter replay, erasure,
  settings, audit verification, locked sign-ins and security alerts. The sending halt (the incident switch,
  `sending.halt`) is held by supervisors too: whoever runs campaigns must be able to stop them at once.
- `service`: service-to-service and automation callers (schedulers, downstream systems): the machine
  operations only, never a person's work queue.
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["viewer", "collector", "supervisor", "admin", "service"]
ROLES: tuple[Role, ...] = get_args(Role)

# permission -> what it allows (the description is shown in 403 bodies and in docs/security.md)
PERMISSIONS: dict[str, str] = {
    "session.own": "see who I am signed in as; sign out",
    "docs.read": "read the API documentation (OpenAPI)",
    "reports.read": "aggregates: aging, summaries, campaigns, collection metrics, policies",
    "accounts.read": "account details, timelines and replies, with personal data",
    "accounts.work": "notes, promises, pause / resume / snooze, disputes on an account",
    "tasks.work": "claim and complete own tasks; close own cases",
    "tasks.assign": "assign or reassign tasks to anyone",
    "overrides.write": "skip, approve or send a step now, channel preference, do-not-contact, account flags",
    "approvals.decide": "approve or reject steps held for approval",
    "settlements.offer": "offer a customer a settlement (a reduced amount they may accept in the portal) and "
    "withdraw it",
    "campaigns.write": "create, pause and resume campaigns",
    "policies.write": "load and activate dunning policies",
    "ingest.read": "ingest runs and rejected rows (raw sheet values)",
    "ingest.run": "trigger sheet runs and upload sheets",
    "audit.read": "read the audit log",
    "audit.verify": "verify the audit log's hash chain",
    "dlq.read": "list and inspect dead letters",
    "dlq.replay": "replay dead letters to their topic",
    "providers.read": "provider health: circuit breakers, rate limits, quotas, sends in flight and in doubt",
    "keys.manage": "create, list, rotate and revoke API keys",
    "metrics.snapshot": "recompute the daily collection metrics",
    "reports.generate": "generate a KPI report or scorecard for a period now (e-mailed to the distribution list)",
    "sending.halt": "halt and resume all sending (everything, one channel or one campaign): the incident switch",
    "security.manage": "see locked sign-ins and security alerts (unusual access); unlock a locked sign-in",
    "teams.write": "edit a team's working calendar (time zone, hours, holidays), lead and notification emails",
    "notifications.own": "read and mark read my own notifications (SLA breaches of my tasks or my team's)",
    "scoring.run": "train the scoring models and run the daily scoring now (a new model is activated only "
    "if it beats the active one)",
    "exports.personal": "export the working set (accounts with contact details, next steps, contact history) "
    "as CSV/XLSX to work by hand",
}

_VIEWER = {"session.own", "docs.read", "reports.read", "notifications.own"}
_COLLECTOR = _VIEWER | {"accounts.read", "accounts.work", "tasks.work"}
_SUPERVISOR = _COLLECTOR | {
    "tasks.assign",
    "overrides.write",
    "approvals.decide",
    "settlements.offer",
    "campaigns.write",
    "policies.write",
    "ingest.read",
    "ingest.run",
    "audit.read",
    "dlq.read",
    "providers.read",
    "reports.generate",
    "sending.halt",
    "exports.personal",
    "teams.write",
}
_ADMIN = _SUPERVISOR | {
    "audit.verify",
    "dlq.replay",
    "keys.manage",
    "metrics.snapshot",
    "security.manage",
    "scoring.run",
}
_SERVICE = {
    "session.own",
    "docs.read",
    "reports.read",
    "ingest.run",
    "metrics.snapshot",
    "providers.read",
    "reports.generate",
    "scoring.run",
}

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    "viewer": frozenset(_VIEWER),
    "collector": frozenset(_COLLECTOR),
    "supervisor": frozenset(_SUPERVISOR),
    "admin": frozenset(_ADMIN),
    "service": frozenset(_SERVICE),
}

# Personal data (names, phones, emails, addresses) is shown in clear only to holders of this permission;
# everyone else gets it masked.
PII_PERMISSION = "accounts.read"


def roles_with(permission: str) -> tuple[Role, ...]:
    """The roles that hold `permission` (in the canonical role order)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}: add it to arrears_shared.auth.roles.PERMISSIONS")
    return tuple(r for r in ROLES if permission in ROLE_PERMISSIONS[r])


def permissions_of(roles: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for r in roles:
        out |= ROLE_PERMISSIONS.get(r, frozenset())  # type: ignore[call-overload]
    return frozenset(out)


def check_table() -> None:
    """Every permission a role holds exists (a typo would silently grant nothing)."""
    for role, perms in ROLE_PERMISSIONS.items():
        unknown = perms - PERMISSIONS.keys()
        if unknown:
            raise ValueError(f"role {role} holds unknown permissions {sorted(unknown)}")


check_table()
