"""The portal's public pages. A link (`/p/<token>`) shows only a verification form; after verification a
cookie scopes the visit to that one account (`/portal/account`). Every route is public by design (the debtor has no
credential but the link and the fact they know) and rate-limited per client address."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from arrears_shared.auth import public
from arrears_shared.auth.gate import client_address
from arrears_shared.clock import local_day
from arrears_shared.delivery.render import money
from arrears_shared.links import LinkClaims, LinkError, LinkExpired, LinkSigner
from arrears_shared.money import minor_exponent
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import Counter

from ..accounts.service import get_account
from ..actions import service as actions
from ..links.service import record_open
from ..offers import service as offers
from ..payments import service as payments
from ..payments.checkout import CheckoutClient, CheckoutUnavailable, create_params
from ..plans.service import PlanPolicy, PlanRefused, choose, schedule
from ..preferences import service as prefs
from ..settings import PortalSettings
from ..verification import sessions
from ..verification.service import Outcome, Policy, verify
from .i18n import pick
from .pages import SECURITY_HEADERS, content_security_policy, render
from .ratelimit import AddressLimiter

log = logging.getLogger(__name__)
LINKS = Counter("arrears_portal_link_opens_total", "Link opens by outcome", ["outcome"])
VERIFICATIONS = Counter("arrears_portal_verifications_total", "Verification attempts by outcome", ["outcome"])
CHECKOUTS = Counter(
    "arrears_portal_checkouts_total", "Checkout sessions the portal asked for, by outcome", ["outcome"]
)
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{1,20}$")


def portal_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["portal"], include_in_schema=False)
    state: dict[str, Any] = {}

    def settings() -> PortalSettings:
        s = get_context().settings
        assert isinstance(s, PortalSettings)
        return s

    def signer() -> LinkSigner | None:
        if "signer" not in state:
            state["signer"] = LinkSigner.from_settings(settings())
        return state["signer"]  # type: ignore[no-any-return]

    async def limited(request: Request) -> None:  # async: no worker-thread hop per request
        if "limiter" not in state:
            state["limiter"] = AddressLimiter(settings().portal_rate_per_minute)
        wait = state["limiter"].allow(client_address(request.scope))
        if wait:
            lang = pick(request.query_params.get("lang"), request.headers.get("accept-language"))
            raise HTTPException(429, detail=_t(lang, "too_many"), headers={"Retry-After": str(int(wait) + 1)})

    def compliance_rules() -> Any:
        if "rules" not in state:
            state["rules"] = prefs.rules_from(settings().portal_compliance_rules_path)
        return state["rules"]

    def checkout() -> CheckoutClient | None:
        s = settings()
        if not s.portal_checkout_base_url or s.portal_checkout_secret_key is None:
            return None
        if "checkout" not in state:
            state["checkout"] = CheckoutClient(
                s.portal_checkout_base_url,
                s.portal_checkout_secret_key.get_secret_value(),
                s.portal_checkout_timeout_s,
            )
        return state["checkout"]  # type: ignore[no-any-return]

    def checkout_origin() -> str:
        s = settings()
        return _origin_of(s.portal_checkout_page_origin or s.portal_checkout_base_url)

    def public_base(request: Request) -> str:
        s = settings()
        if s.portal_public_url:
            return s.portal_public_url.rstrip("/")
        link = s.link_public_url.rstrip("/")
        return link.removesuffix("/p") if link.endswith("/p") else str(request.base_url).rstrip("/")

    def page_for(lang: str, template: str, **values: Any) -> Response:
        s = settings()
        return render(template, lang, s.portal_brand_name, s.portal_contact, **values)

    def claims_or_page(token: str, lang: str) -> LinkClaims | Response:
        s = signer()
        try:
            if s is None:
                raise LinkError("no link key configured")
            return s.verify(token)
        except LinkExpired:
            LINKS.labels("expired").inc()
            return page_for(lang, "message.html", status=410, kind="error", message=_t(lang, "link_expired"))
        except LinkError:
            LINKS.labels("invalid").inc()
            return page_for(lang, "message.html", status=404, kind="error", message=_t(lang, "link_invalid"))

    async def same_site_posts(request: Request) -> None:
        """Defence in depth beside the CSRF token: a browser's POST that says it comes from another site
        (`Sec-Fetch-Site` other than `same-origin`, or an `Origin` that is not ours) changes nothing (403).
        `Origin: null` is what our own forms send too (the pages' `Referrer-Policy: no-referrer` makes
        Chromium send it), so it is refused only when the browser does not say `same-origin` (sandboxed
        iframes and `data:` pages say `cross-site`). Requests without those headers (older browsers,
        scripts) still need the visit's cookie and CSRF token."""
        if request.method != "POST":
            return
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site in ("cross-site", "same-site"):
            raise HTTPException(403, "cross-site request refused")
        origin = request.headers.get("origin")
        if origin is not None and origin.strip().lower() == "null":
            if fetch_site != "same-origin":
                raise HTTPException(403, "cross-site request refused")
            return
        if origin:
            mine = {str(request.base_url).rstrip("/"), public_base(request)}
            if not any(origin == _origin_of(m) for m in mine):
                raise HTTPException(403, "cross-site request refused")

    link_access = [
        Depends(
            public(
                "debtor's personal link: a signed, expiring token; discloses nothing before "
                "verification; rate-limited per address"
            )
        ),
        Depends(limited),
    ]
    visit_access = [
        Depends(
            public(
                "debtor's verified visit: a session cookie scoped to one account, CSRF "
                "token on every form; rate-limited per address"
            )
        ),
        Depends(limited),
        Depends(same_site_posts),
    ]

    @router.get("/p/{token}", dependencies=link_access)
    async def open_link(token: str, request: Request) -> Response:
        lang = pick(request.query_params.get("lang"), request.headers.get("accept-language"))
        claims = claims_or_page(token, lang)
        if isinstance(claims, Response):
            return claims
        ctx = get_context()
        async with ctx.transaction() as tx:
            await record_open(tx, claims, datetime.now(UTC))
        LINKS.labels("valid").inc()
        return page_for(
            lang, "verify.html", action=f"/p/{token}", other_lang_href=f"/p/{token}?lang={_other(lang)}"
        )

    @router.post("/p/{token}", dependencies=link_access)
    async def check(
        token: str,
        request: Request,
        digits: str = Form("", max_length=20),
        lang: str = Form("en", max_length=5),
    ) -> Response:
        lang = pick(lang, None)
        claims = claims_or_page(token, lang)
        if isinstance(claims, Response):
            return claims
        s, ctx, now = settings(), get_context(), datetime.now(UTC)
        policy = Policy(
            s.portal_verify_max_attempts,
            timedelta(seconds=s.portal_verify_window_s),
            timedelta(seconds=s.portal_lockout_s),
        )
        async with ctx.transaction() as tx:
            account = await get_account(tx.conn, ctx.schema, claims.account_id)
            outcome = await verify(
                tx.conn,
                ctx.schema,
                account,
                claims.account_id,
                claims.notice_id,
                digits,
                client_address(request.scope),
                policy,
                now,
            )
            cookie = None
            if outcome is Outcome.VERIFIED:
                cookie = await sessions.open_session(
                    tx.conn,
                    ctx.schema,
                    claims.account_id,
                    claims.notice_id,
                    lang,
                    now,
                    timedelta(seconds=s.portal_session_ttl_s),
                )
        VERIFICATIONS.labels(outcome.value).inc()
        if cookie is not None:
            r = RedirectResponse("/portal/account", status_code=303, headers=SECURITY_HEADERS)
            r.set_cookie(
                sessions.COOKIE,
                cookie,
                max_age=s.portal_session_ttl_s,
                httponly=True,
                secure=s.portal_cookie_secure,
                # Lax, not Strict: the gateway's hosted page (another site) sends the debtor back to
                # /portal/paid by a top-level GET, which must carry the visit. Lax never sends it on a
                # cross-site POST or subrequest; every state change is a POST with the visit's CSRF token
                # and `same_site_posts` refuses cross-site POSTs outright (docs/security.md, portal)
                samesite="lax",
                path="/",
            )
            return r
        status, key = {
            Outcome.WRONG: (200, "verify_wrong"),
            Outcome.LOCKED: (429, "verify_locked"),
            Outcome.UNAVAILABLE: (200, "verify_wrong"),  # the same answer: whether we know it is not told
        }[outcome]
        return page_for(lang, "verify.html", status=status, action=f"/p/{token}", error=_t(lang, key))

    async def visit(request: Request, tx_conn: Any) -> sessions.Session | None:
        s = settings()
        return await sessions.current(
            tx_conn,
            get_context().schema,
            request.cookies.get(sessions.COOKIE),
            datetime.now(UTC),
            timedelta(seconds=s.portal_session_ttl_s),
        )

    def session_over(request: Request) -> Response:
        lang = pick(request.query_params.get("lang"), request.headers.get("accept-language"))
        return page_for(lang, "message.html", status=401, kind="error", message=_t(lang, "session_over"))

    async def account_page(
        session: sessions.Session, conn: Any, *, done: str = "", error: str = "", status: int = 200
    ) -> Response:
        s, ctx = settings(), get_context()
        account = await get_account(conn, ctx.schema, session.account_id)
        lang = session.locale
        if account is None or account.removed:
            return page_for(
                lang, "message.html", status=404, kind="error", message=_t(lang, "verify_unavailable")
            )
        today = local_day(account.timezone, datetime.now(UTC))
        can_pay = checkout() is not None and account.balance_minor > 0
        exp = minor_exponent(account.currency)
        page = page_for(
            lang,
            "account.html",
            status=status,
            name=account.first_name,
            amount=money(account.balance_minor, account.currency),
            currency=account.currency,
            due_date=account.due_date.isoformat(),
            settled=account.balance_minor <= 0 or account.status in ("paid", "closed"),
            channels=list(account.channels),
            csrf=session.csrf,
            done=done,
            error=error,
            today=today.isoformat(),
            last_day=(today + timedelta(days=s.portal_promise_max_days)).isoformat(),
            can_pay=can_pay,
            pay_nonce=secrets.token_urlsafe(12),
            pay_min=money(min(s.portal_pay_min_minor, max(account.balance_minor, 0)), account.currency),
            balance_plain=f"{account.balance_minor / 10**exp:.{exp}f}",
            **(await plans_and_offers(conn, account)),
            prefs=await preferences_form(conn, account),
        )
        if can_pay:
            page.headers["Content-Security-Policy"] = content_security_policy((checkout_origin(),))
        return page

    async def preferences_form(conn: Any, account: Any) -> dict[str, Any]:
        """The contact-preferences form, filled with the debtor's last saved choice."""
        saved = await prefs.current(conn, get_context().schema, account.account_id)
        return {
            **saved.form(),
            "saved_on": saved.at.date().isoformat() if saved.at else "",
            "zone": account.timezone or "",
            "not_before_hours": prefs.NOT_BEFORE_HOURS,
            "not_after_hours": prefs.NOT_AFTER_HOURS,
        }

    async def plans_and_offers(conn: Any, account: Any) -> dict[str, Any]:
        """The account page's instalment-plan form (within the policy) and the settlement offers it shows."""
        plan = PlanPolicy.from_settings(settings())
        today = local_day(account.timezone, datetime.now(UTC))
        shown = await offers.visible(conn, get_context().schema, account.account_id, today)
        exp = minor_exponent(account.currency)
        return {
            "plan_most": plan.most_instalments(max(account.balance_minor, 0)),
            "plan_cadences": plan.cadences,
            "offers": [
                {
                    "id": o.offer_id,
                    "amount": money(o.amount_minor, o.currency),
                    "amount_plain": f"{o.amount_minor / 10**exp:.{exp}f}",
                    "expires_on": o.expires_on.isoformat(),
                    "accepted": o.status == "accepted",
                }
                for o in shown
                if o.currency == account.currency
                and (o.status == "accepted" or o.amount_minor < account.balance_minor)  # still a settlement
            ],
        }

    @router.get("/portal/account", dependencies=visit_access)
    async def show(request: Request) -> Response:
        ctx = get_context()
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is None:
                return session_over(request)
            done = request.query_params.get("done", "")
            known = ("promise", "dispute", "opt_out", "pay_cancelled", "plan", "offer", "preferences")
            msg = _t(session.locale, f"done_{done}") if done in known else ""
            return await account_page(session, tx.conn, done=msg)

    async def act(
        request: Request, csrf: str, do: Callable[[Any, sessions.Session, datetime], Any], done: str
    ) -> Response:
        ctx = get_context()
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is None:
                return session_over(request)
            if not sessions.csrf_ok(session, csrf):
                raise HTTPException(403, "form expired: reload the page")
            problem = await do(tx, session, datetime.now(UTC))
            if problem:
                return await account_page(session, tx.conn, error=problem, status=422)
        return RedirectResponse(f"/portal/account?done={done}", status_code=303, headers=SECURITY_HEADERS)

    @router.post("/portal/account/promise", dependencies=visit_access)
    async def promise(
        request: Request,
        csrf: str = Form("", max_length=64),
        date_: str = Form("", alias="date", max_length=10),
        amount: str = Form("", max_length=20),
    ) -> Response:
        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            account = await get_account(tx.conn, tx.schema, session.account_id)
            today = local_day(account.timezone if account else None, now)
            last = today + timedelta(days=settings().portal_promise_max_days)
            try:
                on = date.fromisoformat(date_)
            except ValueError:
                on = None
            if on is None or not today <= on <= last:
                return _t(session.locale, "bad_date").format(last=last.isoformat())
            minor = None
            if amount.strip() and account is not None:
                minor = _minor(amount, account.currency)
                if minor is None or minor <= 0:
                    return _t(session.locale, "bad_amount")
            await actions.promise(tx, session, on, minor, now)
            return None

        return await act(request, csrf, do, "promise")

    @router.post("/portal/account/dispute", dependencies=visit_access)
    async def dispute(
        request: Request, csrf: str = Form("", max_length=64), note: str = Form("", max_length=4000)
    ) -> Response:
        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            text = " ".join(note.split())
            if not text or len(text) > 1000:
                return _t(session.locale, "bad_note")
            await actions.dispute(tx, session, text, now)
            return None

        return await act(request, csrf, do, "dispute")

    @router.post("/portal/account/preferences", dependencies=visit_access)
    async def preferences(
        request: Request,
        csrf: str = Form("", max_length=64),
        channel: list[str] = Form([]),
        not_before: str = Form("", max_length=8),
        not_after: str = Form("", max_length=8),
        avoid: list[str] = Form([]),
    ) -> Response:
        """Channels in order and quiet times: the `set_channel_preference` override (prefs/)."""

        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            account = await get_account(tx.conn, tx.schema, session.account_id)
            if account is None:
                raise HTTPException(422, "unknown account")
            try:
                ranked, window = prefs.parse(account.channels, channel, not_before, not_after, avoid)
            except prefs.Refused as e:
                return _t(session.locale, str(e))
            problem = prefs.legal_problem(
                window,
                now,
                timezone=account.timezone,
                country=account.country,
                region=account.region,
                rules=compliance_rules(),
            )
            if problem is not None:
                key, start, end = problem
                return _t(session.locale, key).format(start=start, end=end)
            await prefs.save(tx, session, ranked, window, now)
            return None

        return await act(request, csrf, do, "preferences")

    @router.post("/portal/account/opt-out", dependencies=visit_access)
    async def opt_out(
        request: Request, csrf: str = Form("", max_length=64), channel: str = Form("", max_length=21)
    ) -> Response:
        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            account = await get_account(tx.conn, tx.schema, session.account_id)
            if not _CHANNEL.match(channel) or account is None or channel not in account.channels:
                raise HTTPException(422, "unknown channel")
            await actions.opt_out(tx, session, channel, now)
            return None

        return await act(request, csrf, do, "opt_out")

    @router.post("/portal/account/pay", dependencies=visit_access)
    async def pay(
        request: Request,
        csrf: str = Form("", max_length=64),
        nonce: str = Form("", max_length=64),
        full: str = Form("", max_length=5),
        amount: str = Form("", max_length=20),
    ) -> Response:
        """Pay in full (`full=1`) or in part (`amount`): ask the gateway for a hosted checkout session
        (idempotent per visit, amount and rendered form) and send the debtor there."""
        ctx, s, client = get_context(), settings(), checkout()
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is None:
                return session_over(request)
            if not sessions.csrf_ok(session, csrf):
                raise HTTPException(403, "form expired: reload the page")
            account = await get_account(tx.conn, ctx.schema, session.account_id)
            if client is None or account is None or account.removed or account.balance_minor <= 0:
                return await account_page(
                    session, tx.conn, error=_t(session.locale, "pay_unavailable"), status=409
                )
            minor = account.balance_minor if full else _minor(amount, account.currency)
            problem = payments.amount_problem(account, minor, s.portal_pay_min_minor)
            if problem is not None or minor is None:
                CHECKOUTS.labels("refused").inc()
                message = _t(session.locale, problem or "bad_amount").format(
                    most=money(account.balance_minor, account.currency),
                    least=money(min(s.portal_pay_min_minor, account.balance_minor), account.currency),
                )
                return await account_page(session, tx.conn, error=message, status=422)
        # the gateway call holds no transaction; its idempotency key makes a repeat return the same session
        key = payments.idempotency_key(session, minor, nonce or csrf)
        base = public_base(request)
        params = create_params(
            account_id=account.account_id,
            amount_minor=minor,
            currency=account.currency,
            description=_t(session.locale, "pay_description").format(brand=s.portal_brand_name),
            success_url=f"{base}/portal/paid?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base}/portal/account?done=pay_cancelled",
            locale=session.locale,
            visit=session.actor,
        )
        try:
            started = await client.create(params, key)
        except CheckoutUnavailable as e:
            CHECKOUTS.labels("unavailable").inc()
            log.warning("checkout unavailable", extra={"reason": str(e)[:200]})
            async with ctx.transaction() as tx:
                return await account_page(
                    session, tx.conn, error=_t(session.locale, "pay_unavailable"), status=503
                )
        async with ctx.transaction() as tx:
            await payments.record_checkout(tx, session, started, key, datetime.now(UTC))
        CHECKOUTS.labels("started").inc()
        if not started.url:
            async with ctx.transaction() as tx:
                return await account_page(
                    session, tx.conn, error=_t(session.locale, "pay_unavailable"), status=409
                )
        return RedirectResponse(started.url, status_code=303, headers=SECURITY_HEADERS)

    @router.get("/portal/paid", dependencies=visit_access)
    async def paid(request: Request) -> Response:
        """Where the gateway sends the debtor back after paying. The payment itself reaches the account
        through the gateway's webhook (ingest), so this page only thanks and says what happens next."""
        ctx = get_context()
        session_id = request.query_params.get("session_id", "")[:255]
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is None:  # the visit ended while paying: thank without disclosing anything
                lang = pick(request.query_params.get("lang"), request.headers.get("accept-language"))
                return page_for(lang, "message.html", kind="ok", message=_t(lang, "paid_no_visit"))
            detail = await payments.owns_checkout(tx, session, session_id) if session_id else None
        lang = session.locale
        if detail is None:
            return page_for(lang, "message.html", status=404, kind="error", message=_t(lang, "paid_unknown"))
        status = ""
        client = checkout()
        if client is not None:
            try:
                status = (await client.retrieve(session_id)).payment_status
            except CheckoutUnavailable:
                status = ""
        amount = money(int(detail["amount_minor"]), str(detail["currency"]))
        key = "paid_done" if status == "paid" else "paid_pending"
        return page_for(
            lang, "paid.html", message=_t(lang, key).format(amount=amount), back=_t(lang, "paid_back")
        )

    def plan_of(account: Any, count: str, every: str, first: str, lang: str) -> Any:
        """The schedule of the plan the form asks for, or the message saying which limit it breaks."""
        try:
            on = date.fromisoformat(first)
        except ValueError:
            on = date.min  # refused as outside the window
        n = int(count) if count.isdigit() else 0
        try:
            return schedule(
                account.balance_minor,
                n,
                every,
                on,
                local_day(account.timezone, datetime.now(UTC)),
                PlanPolicy.from_settings(settings()),
            )
        except PlanRefused as e:
            values = {"most": "", "last": ""} | e.values
            return _t(lang, e.key).format(**values)

    @router.get("/portal/account/plan", dependencies=visit_access)
    async def preview_plan(request: Request) -> Response:
        """The schedule of an instalment plan (dates and amounts summing to the balance), to confirm."""
        ctx, q = get_context(), request.query_params
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is None:
                return session_over(request)
            account = await get_account(tx.conn, ctx.schema, session.account_id)
            if account is None or account.removed or account.balance_minor <= 0:
                problem = _t(session.locale, "plan_unavailable")
                return await account_page(session, tx.conn, error=problem, status=409)
            count, every, first = q.get("count", "")[:3], q.get("every", "")[:10], q.get("first", "")[:10]
            plan = plan_of(account, count, every, first, session.locale)
            if isinstance(plan, str):
                return await account_page(session, tx.conn, error=plan, status=422)
        return page_for(
            session.locale,
            "plan.html",
            csrf=session.csrf,
            count=len(plan),
            every=every,
            first=first,
            every_label=_t(session.locale, f"plan_every_{every}"),
            rows=[(i.number, i.due_on.isoformat(), money(i.amount_minor, account.currency)) for i in plan],
            total=money(sum(i.amount_minor for i in plan), account.currency),
        )

    @router.post("/portal/account/plan", dependencies=visit_access)
    async def choose_plan(
        request: Request,
        csrf: str = Form("", max_length=64),
        count: str = Form("", max_length=3),
        every: str = Form("", max_length=10),
        first: str = Form("", max_length=10),
    ) -> Response:
        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            account = await get_account(tx.conn, tx.schema, session.account_id)
            if account is None or account.removed or account.balance_minor <= 0:
                return _t(session.locale, "plan_unavailable")
            plan = plan_of(account, count, every, first, session.locale)
            if isinstance(plan, str):
                return plan
            await choose(tx, session, plan, every, account.currency, now)
            return None

        return await act(request, csrf, do, "plan")

    @router.post("/portal/account/offer", dependencies=visit_access)
    async def accept_offer(
        request: Request, csrf: str = Form("", max_length=64), offer_id: str = Form("", max_length=64)
    ) -> Response:
        """Accept a supervisor's settlement offer (once; a withdrawn or expired one is refused)."""

        async def do(tx: Any, session: sessions.Session, now: datetime) -> str | None:
            account = await get_account(tx.conn, tx.schema, session.account_id)
            if account is None or account.removed:
                return _t(session.locale, "offer_unavailable")
            today = local_day(account.timezone, now)
            outcome = await offers.accept(
                tx, session, offer_id, today, now, account.balance_minor, account.currency
            )
            if outcome is offers.Accepted.STALE:
                owed = money(max(account.balance_minor, 0), account.currency)
                return _t(session.locale, "offer_stale").format(balance=owed)
            return _t(session.locale, "offer_unavailable") if outcome is offers.Accepted.UNAVAILABLE else None

        return await act(request, csrf, do, "offer")

    @router.post("/portal/account/sign-out", dependencies=visit_access)
    async def sign_out(request: Request, csrf: str = Form("", max_length=64)) -> Response:
        ctx = get_context()
        token = request.cookies.get(sessions.COOKIE)
        async with ctx.transaction() as tx:
            session = await visit(request, tx.conn)
            if session is not None and token and sessions.csrf_ok(session, csrf):
                await sessions.end(tx.conn, ctx.schema, token, datetime.now(UTC))
        r = session_over(request)
        r.delete_cookie(sessions.COOKIE, path="/")
        return r

    return router


def _t(lang: str, key: str) -> str:
    from .i18n import TEXT

    return TEXT.get(lang, TEXT["en"])[key]


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _other(lang: str) -> str:
    return "es" if lang == "en" else "en"


def _minor(amount: str, currency: str) -> int | None:
    """`"25.5"` -> 2550 for USD; None when it is not an amount of the currency's precision."""
    try:
        value = Decimal(amount.strip().replace(",", "."))
    except InvalidOperation:
        return None
    exp = minor_exponent(currency)
    scaled = value * (10**exp)
    if scaled != scaled.to_integral_value() or not value.is_finite():
        return None
    return int(scaled)
