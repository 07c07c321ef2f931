"""Customers' words and collectors' free text are sealed at rest with the account's data key: a reply's text
(`activity.data`), a note's body (`notes` and its audit entry), a closed case's note (`cases` and its audit
entry). The timeline and the cases API show them opened, `[erased]` once the account is erased; the audit chain,
which hashes what is stored, still verifies."""

from __future__ import annotations

import json
from datetime import timedelta

from arrears_escalation.cases.service import close_case, get_case, list_cases
from arrears_escalation.deps import Deps
from arrears_escalation.overrides.service import add_note
from arrears_escalation.timeline.service import timeline
from arrears_shared.audit import verify
from arrears_shared.auth import Principal
from arrears_shared.clock import Clock
from arrears_shared.events import Intent, ReplyReceived
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher, subject_access
from sqlalchemy import text

from .test_escalation import T0, handle

COLLECTOR = Principal(name="collector-1", roles=frozenset({"collector"}), kind="api_key", subject="k1")
REPLY = "call me on 07911 123456, I lost my job"
NOTE = "spoke to Jane, husband's number 07700 900123"
CLOSE = "agreed £20 a week with Jane"


def reply(aid: str, words: str = REPLY) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=f"r-{aid}",
        channel="sms",
        from_address="+447911123456",
        text=words,
        intent=Intent.CALLBACK_REQUEST,
        confidence=0.9,
        received_at=T0,
    )


async def stored(engine, sql: str, **params: str) -> list[str]:  # type: ignore[no-untyped-def]
    async with engine.connect() as c:
        return [r[0] for r in await c.execute(text(sql), params)]


def assert_sealed(values: list[str], *plaintexts: str) -> None:
    assert values, "nothing stored"
    for v in values:
        assert cipher.is_sealed(v), f"{v!r} stored in clear"
        for p in plaintexts:
            assert p not in v


async def write_everything(engine, aid: str) -> str:  # type: ignore[no-untyped-def]
    """A reply (opens a callback case), a note, the case closed: returns the case id."""
    await handle(engine, Deps(clock=Clock(fixed=T0)), reply(aid))
    async with transaction(engine, "escalation", "escalation") as tx:
        await add_note(tx, COLLECTOR, aid, NOTE, None, T0 + timedelta(minutes=1))
    async with engine.connect() as c:
        (case,) = await list_cases(c, "open", aid)
    async with engine.begin() as c:
        closed = await close_case(c, case.case_id, CLOSE, T0 + timedelta(minutes=2), who=COLLECTOR)
    assert closed is not None and closed.close_note == CLOSE
    return case.case_id


async def test_stored_sealed_and_shown_opened(engine) -> None:  # type: ignore[no-untyped-def]
    case_id = await write_everything(engine, "SEAL-1")

    # at rest: ciphertext only, wherever the text went
    assert_sealed(
        await stored(
            engine, "SELECT data->>'text' FROM escalation.activity WHERE account_id = :a", a="SEAL-1"
        ),
        "07911",
        "job",
    )
    activity = await stored(
        engine, "SELECT data::text FROM escalation.activity WHERE account_id = :a", a="SEAL-1"
    )
    summaries = await stored(
        engine, "SELECT summary FROM escalation.activity WHERE account_id = :a", a="SEAL-1"
    )
    assert all("07911" not in x and "job" not in x for x in activity + summaries)
    assert_sealed(
        await stored(engine, "SELECT body FROM escalation.notes WHERE account_id = :a", a="SEAL-1"),
        "Jane",
        "07700",
    )
    assert_sealed(
        await stored(engine, "SELECT close_note FROM escalation.cases WHERE case_id = :c", c=case_id), "Jane"
    )
    audit = await stored(
        engine,
        "SELECT after::text FROM escalation.audit_log WHERE action IN ('note.add', 'case.close') "
        "AND (entity_id = :a OR after->>'account_id' = :a)",
        a="SEAL-1",
    )
    assert len(audit) == 2 and all("Jane" not in a and "07700" not in a for a in audit)
    assert_sealed([v for a in audit for k, v in json.loads(a).items() if k in ("body", "note")])

    # on display: opened
    async with engine.connect() as c:
        items, _ = await timeline(c, "SEAL-1")
        case = await get_case(c, case_id)
        (listed,) = await list_cases(c, "closed", "SEAL-1")
        # the chain hashes what is stored (the sealed text): it verifies
        report = await verify(c, "escalation")
    assert report.ok, report.problems
    by_kind = {i.kind: i for i in items}
    assert by_kind["message_in"].data["text"] == REPLY
    assert by_kind["note"].summary == f"collector-1: {NOTE}"
    assert by_kind["case.closed"].summary == f"callback_request: {CLOSE}"
    assert by_kind["audit.note.add"].data["body"] == NOTE
    assert by_kind["audit.case.close"].data["note"] == CLOSE
    assert case is not None and case.close_note == CLOSE and listed.close_note == CLOSE


async def test_erased_account_shows_erased(engine) -> None:  # type: ignore[no-untyped-def]
    case_id = await write_everything(engine, "SEAL-2")
    async with engine.begin() as c:
        assert await subject_access.erase(c, "SEAL-2", "test")
    async with engine.connect() as c:
        items, _ = await timeline(c, "SEAL-2")
        case = await get_case(c, case_id)
        report = await verify(c, "escalation")
    assert report.ok, report.problems  # erasure changes no audit entry: the chain still verifies
    blob = json.dumps([i.model_dump(mode="json") for i in items])
    assert "Jane" not in blob and "07911" not in blob and "job" not in blob
    by_kind = {i.kind: i for i in items}
    assert by_kind["message_in"].data["text"] == cipher.ERASED
    assert by_kind["note"].summary == f"collector-1: {cipher.ERASED}"
    assert by_kind["case.closed"].summary == f"callback_request: {cipher.ERASED}"
    assert by_kind["audit.note.add"].data["body"] == cipher.ERASED
    assert case is not None and case.close_note == cipher.ERASED


async def test_rows_written_before_sealing_read_as_they_are(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO escalation.notes (account_id, case_id, author, body, created_at) "
                "VALUES ('SEAL-3', NULL, 'old', 'written in clear', :at)"
            ),
            {"at": T0},
        )
        await c.execute(
            text(
                "INSERT INTO escalation.activity (id, account_id, at, kind, summary, data) "
                "VALUES ('old-reply', 'SEAL-3', :at, 'message_in', 'sms reply', '{\"text\": \"old words\"}')"
            ),
            {"at": T0},
        )
        items, _ = await timeline(c, "SEAL-3")
    assert [(i.kind, i.summary, i.data.get("text")) for i in items] == [
        ("message_in", "sms reply", "old words"),
        ("note", "old: written in clear", None),
    ]
