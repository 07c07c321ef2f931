"""`arrears dlq list|show|replay`: operate the dead-letter topics of every consumer group.

A replay is written to the console's audit log (where the console's replays are too) as `cli:<os user>`,
in a transaction opened before anything is sent: without a reachable database nothing is replayed. A scan
that stops at `--limit` says so on stderr (and `list --json` ends with a `{"truncated": true}` line)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer
from arrears_shared.audit import append
from arrears_shared.dlq import DeadLetter, Filter, ScanResult, replay, scan
from arrears_shared.settings import KafkaSettings
from arrears_shared.stream import dead_letter as dl
from arrears_shared.vault.subject_access import opened_for_display
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction
from arrears_cli.progress import ProgressOpt, progress, wanted

AUDIT_SCHEMA = "console"  # the console's replays are audited there too

dlq_app = typer.Typer(
    help="List, inspect and replay dead-letter topics (<topic>.<group>.dlq).", no_args_is_help=True
)

TopicOpt = Annotated[list[str] | None, typer.Option("--topic", "-t", help="DLQ topic(s); default: all")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Substring of the exception type or message")]
SinceOpt = Annotated[
    datetime | None, typer.Option("--since", help="Dead-lettered at or after (ISO 8601, UTC)")
]
UntilOpt = Annotated[datetime | None, typer.Option("--until", help="Dead-lettered at or before")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id (ce_subject / key)")]
BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", envvar="ARREARS_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap"),
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="Stop after this many matching records")]


def _kafka(bootstrap: str | None) -> dict:
    s = KafkaSettings() if bootstrap is None else KafkaSettings(kafka_bootstrap_servers=bootstrap)
    return s.kafka_client_kwargs()


def _filter(topic, reason, since, until, account) -> Filter:  # type: ignore[no-untyped-def]
    from datetime import UTC

    def aware(d: datetime | None) -> datetime | None:
        return d.replace(tzinfo=UTC) if d is not None and d.tzinfo is None else d

    return Filter(tuple(topic or ()), reason, aware(since), aware(until), account)


@dlq_app.command("list")
def list_(
    topic: TopicOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    account: AccountOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    show_progress: ProgressOpt = None,
    limit: LimitOpt = 10_000,
) -> None:
    """List dead-lettered records (no payloads: they may hold personal data)."""
    found = _scan_with_progress(
        bootstrap_servers, _filter(topic, reason, since, until, account), wanted(show_progress), limit
    )
    for d in found:
        s = d.summary()
        if as_json:
            typer.echo(json.dumps(s))
        else:
            typer.echo(
                f"{s['dlq_topic']}/{s['partition']}/{s['offset']}  {s['dead_lettered_at']}  {s['service']}  "
                f"{s['ce_type']}  account={s['account_id']}  attempts={s['attempts']}  {s['reason'][:120]}"
            )
    if as_json and found.truncated:
        typer.echo(json.dumps({"truncated": True, "limit": found.limit}))
    typer.echo(f"{len(found)} record(s)", err=True)


@dlq_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="TOPIC/PARTITION/OFFSET as printed by `list`")],
    bootstrap_servers: BootstrapOpt = None,
    payload: Annotated[bool, typer.Option("--payload", help="Also print the record value")] = False,
    open_personal: Annotated[
        bool,
        typer.Option(
            "--open",
            help="With --payload: open its sealed personal fields with the account's key (needs the database "
            "and ARREARS_VAULT_* keys; [erased] after erasure)",
        ),
    ] = False,
    database_url: DbUrl = None,
) -> None:
    """Show one record: every header (incl. the stack trace) and, on request, its value (personal fields
    sealed, as stored, unless --open)."""
    d = _find(ref, bootstrap_servers)
    out = d.summary() | {"headers": d.h}
    if payload:
        value = d.value
        if open_personal:
            value = run_in_transaction(database_url, lambda c: opened_for_display(c, d.headers, d.value))
        out["value"] = (value or b"").decode("utf-8", "replace")
    typer.echo(json.dumps(out, indent=2))


@dlq_app.command("replay")
def replay_(
    ref: Annotated[
        str | None, typer.Argument(help="TOPIC/PARTITION/OFFSET; omit to replay all that match")
    ] = None,
    topic: TopicOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    account: AccountOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    show_progress: ProgressOpt = None,
    limit: LimitOpt = 10_000,
    database_url: DbUrl = None,
) -> None:
    """Republish to the original topic with the same ce_id: consumers apply it at most once. Audited in the
    console's log as `cli:<os user>` (needs the database: nothing is sent without it)."""
    shown = wanted(show_progress)
    flt = _filter(topic, reason, since, until, account)
    if ref:
        records: list[DeadLetter] = [_find(ref, bootstrap_servers)]
    else:
        records = _scan_with_progress(bootstrap_servers, flt, shown, limit)
    if not records:
        typer.echo("nothing to replay")
        raise typer.Exit(0)
    if not yes:
        typer.confirm(f"Replay {len(records)} record(s) to their original topics?", abort=True)

    async def work(conn: AsyncConnection) -> int:
        with progress("replaying", len(records), enabled=shown) as (advance, _):
            n = await replay(_kafka(bootstrap_servers), records, on_sent=advance)
        await append(
            conn,
            AUDIT_SCHEMA,
            actor=cli_actor(),
            role="admin",
            action="dlq.replay" if ref else "dlq.replay_set",
            entity="dead_letter" if ref else "dead_letters",
            entity_id=ref or _describe(flt),
            after={
                "count": n,
                "records": [f"{d.dlq_topic}/{d.partition}/{d.offset}" for d in records],
                "ce_ids": [d.h.get("ce_id") for d in records],
                "consumer_groups": sorted({d.h.get(dl.ORIGINAL_GROUP) or "" for d in records}),
                "truncated": bool(getattr(records, "truncated", False)),
            },
        )
        return n

    n = run_in_transaction(database_url, work)
    typer.echo(f"replayed {n} record(s)")


def _describe(flt: Filter) -> str:
    parts = [f"topic={t}" for t in flt.topics]
    parts += [
        f"{k}={v}" for k in ("reason_contains", "since", "until", "account_id") if (v := getattr(flt, k))
    ]
    return (", ".join(parts) or "every dead-letter topic")[:300]


def _scan_with_progress(bootstrap: str | None, flt: Filter, shown: bool, limit: int) -> ScanResult:
    """Scan the DLQ topics, showing records read out of the records they hold."""
    with progress("reading dead-letter topics", None, enabled=shown, unit="records read") as (
        advance,
        describe,
    ):
        seen = 0

        def read(done: int, total: int) -> None:
            nonlocal seen
            advance(done - seen)
            seen = done
            describe(f"reading dead-letter topics ({total} records)")

        found = asyncio.run(scan(_kafka(bootstrap), flt, limit=limit, on_progress=read))
    if found.truncated:
        typer.echo(
            f"warning: stopped at --limit {limit}: more dead letters may match (narrow the filter or raise"
            " --limit)",
            err=True,
        )
    return found


def _find(ref: str, bootstrap: str | None) -> DeadLetter:
    try:
        topic, partition, offset = ref.rsplit("/", 2)
        p, o = int(partition), int(offset)
    except ValueError:
        raise typer.BadParameter("expected TOPIC/PARTITION/OFFSET") from None
    for d in asyncio.run(scan(_kafka(bootstrap), Filter(topics=(topic,)))):
        if d.partition == p and d.offset == o:
            return d
    typer.echo(f"no record at {ref}", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
