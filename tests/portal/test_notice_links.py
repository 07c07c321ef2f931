"""Links in notices: every collection notice (SMS and email, every tier and locale) carries its own link,
which opens exactly that notice's claims; SMS stays within the segment ceiling; without a key, or for a
confirmation, no link and the texts are as before."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest
from arrears_dispatcher_email.channel import EmailChannel
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.segments import count_segments
from arrears_dispatcher_sms.templates_sms import SmsTemplates
from arrears_shared import links
from arrears_shared.delivery.render import sample_notice
from arrears_shared.events import NoticeDue, Tier

KEY = "notice-link-test-key-0123456789abcdefghij"
BASE = "http://127.0.0.1:38555/p/"  # as long as the dev stack's
LOCALES = ("en", "es-MX")


@pytest.fixture
def link_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[links.LinkSigner]:
    monkeypatch.setenv("ARREARS_LINK_KEY", KEY)
    monkeypatch.setenv("ARREARS_LINK_PUBLIC_URL", BASE)
    links.reset_configuration()
    yield links.LinkSigner(KEY)
    monkeypatch.delenv("ARREARS_LINK_KEY")
    links.reset_configuration()  # later tests in this process see no key again


@pytest.fixture
def no_link_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ARREARS_LINK_KEY", raising=False)
    links.reset_configuration()
    yield
    links.reset_configuration()


def the_link(text: str) -> str:
    [url] = [w for w in text.split() if w.startswith(BASE)]
    return url.rstrip(".,;")


def claims_of(signer: links.LinkSigner, url: str) -> links.LinkClaims:
    assert urlsplit(url).path.startswith("/p/")
    return signer.verify(url.removeprefix(BASE), now=None)


def check_claims(c: links.LinkClaims, n: NoticeDue) -> None:
    assert (c.notice_id, c.account_id, c.channel, c.tier) == (n.notice_id, n.account_id, n.channel, n.tier)
    assert c.issued_at == n.due_at.replace(microsecond=0)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("tier", list(Tier))
def test_every_sms_tier_and_locale_carries_its_notice_link_within_the_ceiling(
    link_key: links.LinkSigner, tier: Tier, locale: str
) -> None:
    t = SmsTemplates("Arrears Collections", max_segments=3)
    t.validate()  # start-up validation with links: every tier in every locale within the ceiling
    n = sample_notice(tier).model_copy(update={"locale": locale})
    body, segments = t.render_counted(n)
    check_claims(claims_of(link_key, the_link(body)), n)
    assert segments.count <= 2 and segments.encoding == "GSM-7", (body, segments)
    assert count_segments(body) == segments and body.count("STOP") == 1  # the opt-out is still there
    assert t.render(n) == body  # the same notice, the same link (a re-render after a crash)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize(("currency", "name"), [("INR", "Priya Sharma"), ("USD", "María López")])
def test_ucs2_messages_with_a_link_still_fit_three_segments(
    link_key: links.LinkSigner, tier: Tier, locale: str, currency: str, name: str
) -> None:
    """`₹` or `í` turns a whole SMS into UCS-2 (67 characters a segment): the texts with a link are short
    enough to stay within the default ceiling of 3 for such accounts too (a dev link of 25 + 64 characters)."""
    t = SmsTemplates("Arrears Collections", max_segments=3)
    n = sample_notice(tier).model_copy(update={"locale": locale, "currency": currency, "customer_name": name})
    body, segments = t.render_counted(n)
    assert segments.count <= 3 and the_link(body)


def test_each_notice_gets_its_own_link(link_key: links.LinkSigner) -> None:
    t = SmsTemplates("Acme")
    a = sample_notice(Tier.REMINDER)
    b = a.model_copy(update={"notice_id": "SAMPLE-1:sample:v1:s2:c0:sms", "step": 2})
    la, lb = the_link(t.render(a)), the_link(t.render(b))
    assert la != lb and claims_of(link_key, lb).notice_id == b.notice_id


@pytest.mark.parametrize("tier", list(Tier))
def test_email_carries_the_link_in_text_and_html(link_key: links.LinkSigner, tier: Tier) -> None:
    ch = EmailChannel(
        EmailSettings(
            service_name="dispatcher-email",
            gmail_api_endpoint="http://127.0.0.1:9",
            gmail_token="t",
            gmail_sender="collections@example.com",
        )
    )
    ch.templates.validate()
    n = sample_notice(tier, channel="email", to="debtor@example.com")
    msg = message_from_bytes(base64.b64decode(ch.render(n)["raw"]), policy=policy.default)
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    text_link = the_link(parts["text/plain"])
    check_claims(claims_of(link_key, text_link), n)
    assert f'href="{text_link}"' in parts["text/html"]


def test_confirmations_and_answers_carry_no_link(link_key: links.LinkSigner) -> None:
    n = sample_notice(Tier.REMINDER).model_copy(update={"purpose": "payment_receipt"})
    assert links.notice_link(n) == ""
    retry = sample_notice(Tier.REMINDER).model_copy(update={"purpose": "payment_retry"})
    assert links.notice_link(retry).startswith(BASE)  # a failed-payment retry asks to pay: it has one


def test_without_a_key_notices_read_as_before(no_link_key: None) -> None:
    t = SmsTemplates("Acme")
    for locale in LOCALES:
        for tier in Tier:
            body = t.render(sample_notice(tier).model_copy(update={"locale": locale}))
            assert "http" not in body
    assert "reply to this message to talk to us" in t.render(sample_notice(Tier.REMINDER))
