"""Async SQLAlchemy engine (asyncpg driver) and schema naming."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..settings import to_asyncpg_url


def schema_for(service: str) -> str:
    """Postgres schema owned by a service: `dispatcher-sms` -> `dispatcher_sms`."""
    return service.replace("-", "_")


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "arrears") -> AsyncEngine:
    """`hide_parameters`: a database error never quotes the bound values (customers' data) in its text; the
    driver's own message is redacted where errors are written out (arrears_shared.redact)."""
    return create_async_engine(
        to_asyncpg_url(url),
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )
