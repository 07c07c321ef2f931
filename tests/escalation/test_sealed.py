"""Customers' words and collectors' free text are sealed at rest with the account's data key: a reply's text
(`activity.data`), a note's body (`notes` and its audit entry), a closed case's note (`cases` and its audit
entry), a task's outcome (`tasks` and its audit entry), the reason given for a reassignment or an override (the
audit entry's `reason`, and the override event it records). The timeline, the cases and the tasks API show them
opened, `[erased]` once the account is erased; the audit chain, which hashes what is stored, still verifies."""

from __future__ import annotations

import json
from datetime import timedelta

from arrears_escalation.cases.service import close_case, get_case, list_cases
from arrears_escalation.deps import Deps
from arrears_escalation.overrides.service import add_note
from arrears_escalation.tasks.service import page_tasks
from arrears_escalation.timeline.service import timeline
from arrears_shared.audit import verify
from arrears_shared.auth import Principal
from arrears_shared.clock import Clock
from arrears_shared.events import Intent, ReplyReceived
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher, subject_access
from auth_support import bearer
from sqlalchemy import text

from . import test_api
from .test_escalation import T0, handle

api = test_api.api  # the service host and its API client (module-scoped fixture)

COLLECTOR = Principal(name="collector-1", roles=frozenset({"collector"}), kind="api_key", subject="k1")
REPLY = "call me on 07911 123456, I lost my job"
NOTE = "spoke to Jane, husband's number 07700 900123"
CLOSE = "agreed £20 a week with Jane"
OUTCOME = "Jane picked up, pays Friday from her sister's account"
ASSIGN = "Jane asked for a Welsh speaker"
PAUSE = "Jane is in hospital until the 20th"
CAMPAIGN = "printer sent the wrong letters"


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


async def write_task_and_overrides(api, aid: str) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """A reply opens a call-back task: reassigned with a reason, completed with an outcome; the account
    paused with a reason. Returns the task id and the headers of a collector."""
    host, client, deps, keys = api
    await handle(host.ctx.engine, deps, reply(aid))
    collector = bearer(keys["collector"])
    sup = bearer(keys["supervisor"])
    [task] = (await client.get("/tasks", params={"account_id": aid}, headers=collector)).json()
    tid = task["task_id"]
    body = {"assignee": test_api.user("collector"), "reason": ASSIGN}
    assert (await client.post(f"/tasks/{tid}/assign", json=body, headers=sup)).status_code == 200
    done = await client.post(f"/tasks/{tid}/complete", json={"outcome": OUTCOME}, headers=collector)
    assert done.status_code == 200 and done.json()["outcome"] == OUTCOME
    pause = await client.post(f"/accounts/{aid}/pause", json={"reason": PAUSE}, headers=collector)
    assert pause.status_code == 202
    return tid, collector


async def test_task_outcome_and_reasons_stored_sealed_and_shown_opened(api, engine) -> None:  # type: ignore[no-untyped-def]
    _, client, _, keys = api
    tid, collector = await write_task_and_overrides(api, "SEAL-5")
    sup = bearer(keys["supervisor"])
    campaign = await client.post("/campaigns/C-SEAL/pause", json={"reason": CAMPAIGN}, headers=sup)
    assert campaign.status_code == 202

    # at rest: ciphertext only (the outcome in `tasks` and in its audit entry; the reasons in the audit entries,
    # the override's also in the event it records)
    assert_sealed(
        await stored(engine, "SELECT outcome FROM escalation.tasks WHERE task_id = :t", t=tid),
        "Jane",
        "Friday",
    )
    assert_sealed(
        await stored(
            engine,
            "SELECT after->>'outcome' FROM escalation.audit_log WHERE action = 'task.complete' AND entity_id = :t",
            t=tid,
        ),
        "Jane",
        "Friday",
    )
    assert_sealed(
        await stored(
            engine,
            "SELECT reason FROM escalation.audit_log WHERE action = 'task.assign' AND entity_id = :t "
            "AND reason <> ''",
            t=tid,
        ),
        "Jane",
        "Welsh",
    )
    pause = "SELECT {} FROM escalation.audit_log WHERE action = 'override.pause' AND entity_id = :e"
    assert_sealed(await stored(engine, pause.format("reason"), e="SEAL-5"), "Jane", "hospital")
    assert_sealed(await stored(engine, pause.format("after->>'reason'"), e="SEAL-5"), "Jane", "hospital")
    # a campaign's override is about no account: its reason is not an account's to seal or erase
    assert await stored(engine, pause.format("reason"), e="C-SEAL") == [CAMPAIGN]
    everything = await stored(
        engine,
        "SELECT concat_ws(' ', reason, after::text) FROM escalation.audit_log "
        "WHERE entity_id IN (:t, :a) OR after->>'account_id' = :a",
        t=tid,
        a="SEAL-5",
    )
    assert len(everything) == 3 and not any(  # task.assign, task.complete, override.pause
        p in e for e in everything for p in ("Jane", "Friday", "Welsh", "hospital")
    )

    # on display: opened (tasks API, one page and one task; the timeline)
    [listed] = (await client.get("/tasks", params={"account_id": "SEAL-5"}, headers=collector)).json()
    assert listed["outcome"] == OUTCOME
    assert (await client.get(f"/tasks/{tid}", headers=collector)).json()["outcome"] == OUTCOME
    items = (await client.get("/accounts/SEAL-5/timeline", headers=collector)).json()
    by_kind = {i["kind"]: i for i in items}
    assert by_kind["audit.task.complete"]["data"]["outcome"] == OUTCOME
    assert any(i["summary"].endswith(f": {ASSIGN}") for i in items if i["kind"] == "audit.task.assign")
    assert by_kind["audit.override.pause"]["summary"].endswith(f": {PAUSE}")
    assert by_kind["audit.override.pause"]["data"]["reason"] == PAUSE
    async with engine.connect() as c:
        report = await verify(c, "escalation")
    assert report.ok, report.problems


async def test_erased_account_task_outcome_and_reasons_show_erased(api, engine) -> None:  # type: ignore[no-untyped-def]
    _, client, _, _ = api
    tid, collector = await write_task_and_overrides(api, "SEAL-6")
    async with engine.begin() as c:
        assert await subject_access.erase(c, "SEAL-6", "test")
    [listed] = (await client.get("/tasks", params={"account_id": "SEAL-6"}, headers=collector)).json()
    assert listed["outcome"] == cipher.ERASED
    assert (await client.get(f"/tasks/{tid}", headers=collector)).json()["outcome"] == cipher.ERASED
    async with engine.connect() as c:
        (page, _) = await page_tasks(c, account_id="SEAL-6")
    assert [t.outcome for t in page] == [cipher.ERASED]
    items = (await client.get("/accounts/SEAL-6/timeline", headers=collector)).json()
    blob = json.dumps(items)
    assert not any(p in blob for p in ("Jane", "Friday", "Welsh", "hospital"))
    by_kind = {i["kind"]: i for i in items}
    assert by_kind["audit.task.complete"]["data"]["outcome"] == cipher.ERASED
    assert by_kind["audit.override.pause"]["summary"].endswith(f": {cipher.ERASED}")
    assert by_kind["audit.override.pause"]["data"]["reason"] == cipher.ERASED
    assert any(i["summary"].endswith(f": {cipher.ERASED}") for i in items if i["kind"] == "audit.task.assign")
    async with engine.connect() as c:
        report = await verify(c, "escalation")
    assert report.ok, report.problems  # erasure changes no audit entry: the chain still verifies


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
        await c.execute(
            text(
                "INSERT INTO escalation.tasks (task_id, account_id, kind, priority, team, status, due_at, "
                "sla_due_at, sla_state, detail, created_at, completed_at, outcome) VALUES ('old-task', 'SEAL-3', "
                "'call_back', 'normal', 'collectors', 'done', :at, :at, 'ok', 'd', :at, :at, 'done in clear')"
            ),
            {"at": T0},
        )
        items, _ = await timeline(c, "SEAL-3")
        tasks, _ = await page_tasks(c, account_id="SEAL-3")
    assert [t.outcome for t in tasks] == ["done in clear"]
    items = [i for i in items if i.kind != "task.created"]
    assert [(i.kind, i.summary, i.data.get("text")) for i in items] == [
        ("message_in", "sms reply", "old words"),
        ("note", "old: written in clear", None),
    ]
