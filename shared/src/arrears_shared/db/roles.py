"""Least privilege in PostgreSQL: two roles per service, and nothing shared.

- `arrears_<schema>_owner` (NOLOGIN) owns the schema and every object in it. Nobody logs in as it:
  migrations run as it through `SET ROLE` by the migrator (the admin that ran `ensure_roles`, which makes
  itself a member), so the DDL credential never reaches a running service.
- `arrears_<schema>` (LOGIN, its own password) is the service's runtime role: USAGE on its own schema,
  SELECT/INSERT/UPDATE/DELETE on its tables (default privileges cover tables later migrations add), only
  SELECT and INSERT on its audit log (no UPDATE, DELETE or TRUNCATE; audit/tables.py), read-only on its
  Alembic version table, and nothing at all in the other services' schemas.
- The platform schema `iam` (API keys, sessions) is owned by `arrears_iam_owner`; every runtime role may read
  keys and sessions and stamp a key's `last_used_at`; only the console (keys API, sign-in) writes them.
- The platform schema `vault` (each account's wrapped data key) is owned by `arrears_vault_owner`; every
  runtime role may read keys and add new ones, none may change or delete one: erasure (`arrears erase`) and
  re-wrapping run as the migrator.

`ensure_roles` is idempotent (roles are cluster-wide, so several databases of one server share them);
`grant_runtime` re-applies a schema's grants and is run by the migration environment after every migration.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from .engine import schema_for

IAM = "iam"
VAULT = "vault"
PLATFORM = (IAM, VAULT)
CONSOLE = "console"
# runtime role's privileges on iam tables: every service / in addition for the console
IAM_GRANTS: dict[str, str] = {
    "alembic_version": "SELECT",  # a service checks at start-up that the schema is at head
    "api_keys": "SELECT, UPDATE (last_used_at)",
    "sessions": "SELECT",
    "sending_halts": "SELECT",  # every dispatcher reads the halts in its claim transaction
    "sign_in_locks": "SELECT, INSERT, UPDATE",  # a failed sign-in at any service counts against the key
    "security_events": "SELECT, INSERT",  # lockouts and unusual-access alerts, append-only
    # each replica flushes its account-read counts, and prunes buckets past the baseline (once an hour)
    "access_counts": "SELECT, INSERT, UPDATE, DELETE",
}
IAM_CONSOLE_GRANTS: dict[str, str] = {
    "alembic_version": "SELECT",
    "api_keys": "SELECT, INSERT, UPDATE",
    "sessions": "SELECT, INSERT, UPDATE, DELETE",
    "sign_in_attempts": "SELECT, INSERT, DELETE",
    "sending_halts": "SELECT, INSERT, UPDATE",
    "sign_in_locks": "SELECT, INSERT, UPDATE, DELETE",
    "security_events": "SELECT, INSERT",
    "access_counts": "SELECT, INSERT, UPDATE, DELETE",
}
# every runtime role's privileges on vault tables: read keys, add a key for a new account; never change one
VAULT_GRANTS: dict[str, str] = {"alembic_version": "SELECT", "account_keys": "SELECT, INSERT"}
_DML = "SELECT, INSERT, UPDATE, DELETE"


def owner_role(schema: str) -> str:
    return f"arrears_{schema}_owner"


def runtime_role(service: str) -> str:
    """`dispatcher-sms` -> `arrears_dispatcher_sms`."""
    return f"arrears_{schema_for(service)}"


def role_url(admin_url: str, role: str, password: str | None) -> str:
    """`admin_url` with its user (and password) replaced by `role` (and `password`)."""
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(role, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def new_passwords(services: Iterable[str]) -> dict[str, str]:
    """A fresh random password per service's runtime role."""
    return {service: secrets.token_urlsafe(24) for service in services}


def _exec(conn: Any, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    return conn.execute(text(sql), dict(params or {}))


def _role_exists(conn: Any, role: str) -> bool:
    return bool(_exec(conn, "SELECT 1 FROM pg_roles WHERE rolname = :r", {"r": role}).first())


def grant_runtime(conn: Any, schema: str, services: Iterable[str]) -> None:
    """(Sync connection, run as the schema's owner or a superuser.) Give the runtime role(s) their grants on
    `schema` as it is now; `services` = the declared services (for `iam`, which all of them use)."""
    if schema in PLATFORM:
        tables = {
            r[0] for r in _exec(conn, "SELECT tablename FROM pg_tables WHERE schemaname = :s", {"s": schema})
        }
        for service in services:
            role = runtime_role(service)
            if not _role_exists(conn, role):
                continue
            _exec(conn, f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
            if schema == VAULT:
                grants = VAULT_GRANTS
            else:
                grants = IAM_CONSOLE_GRANTS if schema_for(service) == CONSOLE else IAM_GRANTS
            for table, privileges in grants.items():
                if table in tables:
                    _exec(conn, f'GRANT {privileges} ON {schema}.{table} TO "{role}"')
        return
    role, owner = f"arrears_{schema}", owner_role(schema)
    if not _role_exists(conn, role):
        return
    _exec(conn, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
    _exec(conn, f'GRANT {_DML} ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    _exec(conn, f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
    if _role_exists(conn, owner):
        for what, privileges in (("TABLES", _DML), ("SEQUENCES", "USAGE, SELECT, UPDATE")):
            _exec(
                conn,
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                f'GRANT {privileges} ON {what} TO "{role}"',
            )
    if _exec(conn, f"SELECT to_regclass('{schema}.alembic_version')").scalar() is not None:
        _exec(conn, f'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON "{schema}".alembic_version FROM "{role}"')
    if _exec(conn, f"SELECT to_regclass('{schema}.audit_log')").scalar() is not None:  # append-only
        _exec(conn, f'REVOKE UPDATE, DELETE, TRUNCATE ON "{schema}".audit_log FROM "{role}"')


def act_as_owner(conn: Any, schema: str) -> bool:
    """(Sync connection, inside the migration's transaction.) Create the schema if missing, owned by its
    owner role when that exists, and switch the transaction to that role when the schema is (now) its own
    and we may; returns whether it did."""
    owner = owner_role(schema)
    exists = _role_exists(conn, owner)
    member = exists and bool(
        _exec(conn, "SELECT pg_has_role(current_user, :o, 'MEMBER')", {"o": owner}).scalar()
    )
    found = _exec(
        conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s", {"s": schema}
    ).first()
    if found is None:
        _exec(conn, f'CREATE SCHEMA "{schema}"' + (f' AUTHORIZATION "{owner}"' if member else ""))
        found = (owner if member else None,)
    if not member or found[0] != owner:
        return False
    if _exec(conn, "SELECT current_user").scalar() != owner:
        _exec(conn, f'SET LOCAL ROLE "{owner}"')
    return True


async def ensure_roles(
    engine: Any, services: Iterable[str], passwords: Mapping[str, str] | None = None
) -> None:
    """As an admin (a superuser, or a role with CREATEROLE that may own the schemas): create or update both
    roles of every service and the iam owner, hand each schema (and everything in it) to its owner, make
    the admin a member of the owner roles (so it can migrate), set the runtime passwords given
    (service -> password; never put in SQL text), and apply the grants. Idempotent; retried when another
    database of the same server changes the same (cluster-wide) roles at the same moment."""
    services = list(services)
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_ensure, services, dict(passwords or {}))
            return
        except DBAPIError as e:
            if attempt == 4 or "concurrent" not in str(e.orig) and "duplicate" not in str(e.orig):
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


def _create_role(conn: Any, role: str, login: bool) -> None:
    _exec(
        conn,
        f"""DO $$ BEGIN
            CREATE ROLE "{role}" {"LOGIN" if login else "NOLOGIN"};
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""",
    )
    _exec(conn, f'ALTER ROLE "{role}" {"LOGIN" if login else "NOLOGIN"}')


def _ensure(conn: Any, services: list[str], passwords: dict[str, str]) -> None:
    admin = _exec(conn, "SELECT current_user").scalar()
    superuser = bool(_exec(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar())
    for schema in (*PLATFORM, *(schema_for(s) for s in services)):
        owner = owner_role(schema)
        _create_role(conn, owner, login=False)
        if not superuser:
            _exec(conn, f'GRANT "{owner}" TO "{admin}"')
        found = _exec(
            conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s", {"s": schema}
        ).first()
        if found is None:
            _exec(conn, f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"')
        else:
            _reassign_schema(conn, schema, owner)
        _exec(conn, f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
    for service in services:
        role = runtime_role(service)
        _create_role(conn, role, login=True)
        if service in passwords:
            _exec(conn, "SELECT set_config('arrears.role_password', :p, true)", {"p": passwords[service]})
            _exec(
                conn,
                f"""DO $$ BEGIN
                    EXECUTE format('ALTER ROLE %I PASSWORD %L', '{role}',
                                   current_setting('arrears.role_password'));
                END $$""",
            )
            _exec(conn, "SELECT set_config('arrears.role_password', '', true)")
    for schema in (*PLATFORM, *(schema_for(s) for s in services)):
        grant_runtime(conn, schema, services)


def _reassign_schema(conn: Any, schema: str, owner: str) -> None:
    """Give an existing schema and its tables, views, sequences and functions to `owner` (a deployment that
    ran with one shared credential moves to per-service roles)."""
    _exec(
        conn,
        f"""DO $$
        DECLARE r record;
        BEGIN
            IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = '{schema}') <> '{owner}' THEN
                EXECUTE format('ALTER SCHEMA %I OWNER TO %I', '{schema}', '{owner}');
            END IF;
            FOR r IN SELECT c.relname, c.relkind FROM pg_class c
                     WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                       AND pg_get_userbyid(c.relowner) <> '{owner}'
            LOOP
                EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', '{schema}', r.relname, '{owner}');
            END LOOP;
            FOR r IN SELECT c.relname FROM pg_class c
                     WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'S'
                       AND pg_get_userbyid(c.relowner) <> '{owner}'
                       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
            LOOP
                EXECUTE format('ALTER SEQUENCE %I.%I OWNER TO %I', '{schema}', r.relname, '{owner}');
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                     WHERE p.pronamespace = '{schema}'::regnamespace AND pg_get_userbyid(p.proowner) <> '{owner}'
            LOOP
                EXECUTE format('ALTER FUNCTION %s OWNER TO %I', r.sig, '{owner}');
            END LOOP;
        END $$""",
    )
