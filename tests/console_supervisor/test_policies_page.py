"""/policies: everyone sees the active policy and its versions; a supervisor simulates a new version against the
active one and only then activates exactly that text (loaded by them, in the segmenter's audit log); a rejected
document shows every problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from segmenter.support import account, deps, handle
from sqlalchemy import text

from .support import SUPERVISOR, Stack, hidden

DEFAULT_YAML = (
    __import__("importlib.resources").resources.files("arrears_segmenter") / "policies" / "default.yaml"
).read_text()
# version 2: the reminder by email only
CANDIDATE = DEFAULT_YAML.replace("version: 1", "version: 2").replace(
    "channels: [sms, email]\n    template_id: reminder-v1",
    "channels: [email]\n    template_id: reminder-v1",
    1,
)


async def test_a_viewer_sees_the_policy_and_its_versions_but_no_forms(stack: Stack) -> None:
    async with stack.signed_in("viewer") as (viewer, csrf):
        r = await viewer.get("/policies")
        assert r.status_code == 200, r.text
        page = r.text
        assert 'href="/policies"' in page and 'href="/campaigns"' in page  # in the navigation
        assert "Active policy: default version 1" in page and "template_id: reminder-v1" in page
        assert "<caption" in page and 'scope="col"' in page
        assert page.count("<form") == 1 and 'action="/logout' in page  # only the sign-out form
        assert "/policies/simulate" not in page and "/policies/activate" not in page
        denied = await viewer.post(f"/policies/simulate?csrf_token={csrf}", data={"document": CANDIDATE})
        assert denied.status_code == 403


async def test_a_supervisor_simulates_then_activates_the_simulated_text(stack: Stack) -> None:
    now = datetime.now(UTC)
    due = (now - timedelta(days=5)).date()
    await handle(stack.engine, deps(now), account("PP-1", due_date=due), account("PP-2", due_date=due))
    async with stack.signed_in("supervisor") as (sup, csrf):
        page = (await sup.get("/policies")).text
        assert "/policies/simulate" in page and 'for="p-doc"' in page
        assert "/policies/activate" not in page  # nothing to activate before a simulation

        # the browser sends the textarea with CRLF line ends: what is simulated is normalised
        r = await sup.post(
            f"/policies/simulate?csrf_token={csrf}",
            data={"document": CANDIDATE.replace("\n", "\r\n"), "days": "30"},
        )
        assert r.status_code == 200, r.text
        sim = r.text
        assert "Simulation: candidate default v2 against active v1" in sim
        assert "Nothing was sent or stored" in sim and 'scope="colgroup"' in sim
        # side by side: reminders by SMS only under the active policy (2 accounts)
        assert '<th scope="row">reminder</th><th scope="row">sms</th><td class="num">0</td>' in sim
        assert hidden(sim, "document") == CANDIDATE  # the exact text, for Activate
        assert 'data-confirm="Activate default version 2?' in sim
        async with stack.engine.connect() as c:  # the simulation stored nothing
            versions = (await c.execute(text("SELECT version FROM segmenter.policies"))).scalars().all()
            assert versions == [1]

        # an Activate whose text differs from what was simulated is refused
        tampered = {
            "document": CANDIDATE.replace("reminder-v1", "reminder-v9"),
            "simulated": hidden(sim, "simulated"),
        }
        r = await sup.post(f"/policies/activate?csrf_token={csrf}", data=tampered)
        assert r.status_code == 409 and "not the text that was simulated" in r.text

        form = {"document": hidden(sim, "document"), "simulated": hidden(sim, "simulated")}
        r = await sup.post(f"/policies/activate?csrf_token={csrf}", data=form)
        assert r.status_code == 303, r.text
        done = await sup.get(r.headers["location"])
        assert "default version 2 is active" in done.text and "Active policy: default version 2" in done.text
        assert f"<td>{SUPERVISOR}</td>" in done.text  # in the versions table

    async with stack.engine.connect() as c:
        active = (
            await c.execute(text("SELECT version, loaded_by FROM segmenter.policies WHERE active"))
        ).one()
        assert tuple(active) == (2, SUPERVISOR)
        audit = (
            await c.execute(
                text("SELECT actor, role, entity_id FROM segmenter.audit_log WHERE action = 'policy.load'")
            )
        ).all()
        assert [tuple(a) for a in audit] == [(SUPERVISOR, "supervisor", "default")]


async def test_an_invalid_policy_shows_every_problem_and_keeps_the_text(stack: Stack) -> None:
    bad = DEFAULT_YAML.replace("version: 1", "version: 7").replace("tier: firm", "tier: loud")
    async with stack.signed_in("supervisor") as (sup, csrf):
        r = await sup.post(f"/policies/simulate?csrf_token={csrf}", data={"document": bad})
        assert r.status_code == 422
        assert "The policy was not accepted" in r.text and "<b>steps.1.tier</b>" in r.text
        assert "tier: loud" in r.text  # back in the textarea to fix
        assert "/policies/activate" not in r.text
        # an uploaded file is used instead of the text; not YAML at all
        r = await sup.post(
            f"/policies/simulate?csrf_token={csrf}",
            data={"document": ""},
            files={"upload": ("p.yaml", b"steps: [", "application/yaml")},
        )
        assert r.status_code == 422 and "not valid YAML" in r.text
        r = await sup.post(f"/policies/simulate?csrf_token={csrf}", data={"document": "  "})
        assert r.status_code == 422 and "paste or upload a policy" in r.text
