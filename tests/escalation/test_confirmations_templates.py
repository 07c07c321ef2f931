"""The confirmation and payment-retry templates (en, es; SMS and email): every purpose renders in every
language with the longest values the settings allow, keeps SMS within the segment ceiling (counted as GSM-7 or
UCS-2 by `segments.py`), always offers a way to opt out, and the email parts carry the unsubscribe link."""

from __future__ import annotations

from datetime import date

import pytest
from arrears_dispatcher_email.channel import EmailTemplates
from arrears_dispatcher_sms.segments import count_segments
from arrears_dispatcher_sms.templates_sms import SmsTemplates
from arrears_shared.delivery.render import sample_notice
from arrears_shared.events import CONFIRMATION_PURPOSES, NoticeDue, Tier

PURPOSES = sorted(CONFIRMATION_PURPOSES | {"payment_retry"})
LONGEST_WAY_TO_PAY = "x" * 60 + " " + "y" * 59  # ARREARS_SEGMENTER_PAYMENT_OPTION: at most 120 characters


def confirmation(purpose: str, locale: str | None, channel: str = "sms") -> NoticeDue:
    to = "+15555550100" if channel == "sms" else "sample@example.com"
    return sample_notice(Tier.REMINDER, channel, to).model_copy(
        update={
            "purpose": purpose,
            "template_id": purpose,
            "locale": locale,
            "notice_id": f"SAMPLE-1:{purpose}:trigger",
            "balance_minor": 99_999_999,
            "about_amount_minor": 99_999_999,
            "about_date": date(2026, 12, 31),
            "plan_every": "fortnight",
            "reference": "R-ABCDEF1234",
            "pay_with": LONGEST_WAY_TO_PAY,
            "retry": 3,
            "retries_max": 3,
        }
    )


@pytest.mark.parametrize("locale", [None, "es", "es-MX"])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_sms_fits_the_segment_ceiling_and_offers_the_opt_out(purpose: str, locale: str | None) -> None:
    t = SmsTemplates("Arrears Collections")
    t.templates.check_variables(
        __import__("arrears_shared.delivery.render", fromlist=["x"]).notice_context(
            confirmation(purpose, locale), "b"
        )
    )
    body, segments = t.render_counted(confirmation(purpose, locale))
    assert segments == count_segments(body)
    assert segments.count <= 3, (purpose, locale, segments, body)
    assert "STOP" in body
    assert "{" not in body and "None" not in body
    if locale:
        assert "Responda STOP" in body  # written in Spanish, not the English footer
    else:
        assert "Reply STOP to opt out" in body


def test_the_spanish_and_english_texts_say_the_facts() -> None:
    t = SmsTemplates("Acme")
    en = t.render(confirmation("plan_confirmation", None))
    es = t.render(confirmation("plan_confirmation", "es"))
    assert "$999,999.99 every two weeks from 2026-12-31" in en
    assert "$999,999.99 cada quincena desde el 2026-12-31" in es
    receipt = t.render(confirmation("payment_receipt", None))
    assert "receipt R-ABCDEF1234" in receipt
    retry = t.render(confirmation("payment_retry", "es"))
    assert LONGEST_WAY_TO_PAY in retry and "aviso 3 de 3" in retry


@pytest.mark.parametrize("locale", [None, "es"])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_email_renders_with_the_unsubscribe_link_and_disclosure(purpose: str, locale: str | None) -> None:
    t = EmailTemplates(
        "Arrears Collections",
        "https://example.com/unsubscribe/{notice_id}",
        disclosure="This is a communication from a debt collector.",
        postal_address="1 Main St",
    )
    subject, text, html, unsub = t.render(confirmation(purpose, locale, "email"))
    assert subject.strip() and unsub in text
    assert ("Hola" if locale else "Hi") in text
    t.validate()  # the dunning tiers still render in every locale folder (es/ now exists for email)


def test_a_retry_offers_the_debtor_portal_link_when_one_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arrears_shared.delivery import render

    link = "https://pay.example.com/n/" + "x" * 80
    monkeypatch.setattr(render, "notice_link", lambda notice: link if notice.is_collection else "")
    t = SmsTemplates("Arrears Collections")
    body, segments = t.render_counted(confirmation("payment_retry", "es"))
    assert link in body and LONGEST_WAY_TO_PAY not in body and segments.count <= 3
    assert link not in t.render(confirmation("payment_receipt", None))


def test_a_template_notice_without_text_is_rendered_but_an_answer_without_text_is_refused() -> None:
    t = SmsTemplates("Acme")
    assert t.render(confirmation("dispute_acknowledgement", None)).startswith("Acme:")
    with pytest.raises(ValueError, match="without text"):
        t.render(confirmation("help", None))
