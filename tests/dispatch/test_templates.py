"""Templates: SMS segments and ceiling, locales, fail-fast validation, email MIME threading and disclosures."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from arrears_dispatcher_email.channel import EmailChannel, EmailTemplates
from arrears_dispatcher_email.mime import message_id_for
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.segments import count_segments
from arrears_dispatcher_sms.templates_sms import SmsTemplates
from arrears_shared.delivery import ThreadRef
from arrears_shared.events import Tier

from .helpers import SENDER, notice


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),  # 153 + 8
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets: 160
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # 154 + 10 = 164 septets; the escape pair is not split
        ("ç" + "a" * 69, "UCS-2", 1),  # ç (lower case) is not in GSM-7
        ("ç" + "a" * 70, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # surrogate pairs: 70 units
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segment_count(text: str, encoding: str, count: int) -> None:
    s = count_segments(text)
    assert (s.encoding, s.count) == (encoding, count)


def test_sms_footer_ceiling_and_locale() -> None:
    t = SmsTemplates("Acme", max_segments=3)
    t.validate()
    en = t.render(notice(tier=Tier.FINAL))
    assert en.startswith("FINAL NOTICE from Acme") and en.endswith("Reply STOP to opt out")
    es = t.render(notice(tier=Tier.FINAL).model_copy(update={"locale": "es-MX"}))
    assert es.startswith("AVISO FINAL de Acme") and es.count("STOP") == 1  # its own opt-out, no footer
    fr = t.render(notice(tier=Tier.FINAL).model_copy(update={"locale": "fr"}))
    assert fr == en  # no French templates: the default language
    with pytest.raises(ValueError, match="segments, more than the ceiling of 1"):
        SmsTemplates("Acme", max_segments=1).render(notice())
    with pytest.raises(ValueError, match="ceiling"):
        SmsTemplates("Acme", max_segments=1).validate()  # fails at start-up, not at the first send


def test_unknown_variable_fails_fast_with_the_template_name(tmp_path: Path) -> None:
    (tmp_path / "sms").mkdir()
    # the unknown variable sits in a branch a sample render would never take
    (tmp_path / "sms" / "firm.j2").write_text("{% if days_past_due > 100000 %}{{ balanse }}{% endif %}Pay.")
    with pytest.raises(ValueError, match=r"sms/firm\.j2: unknown variable\(s\) balanse"):
        SmsTemplates("Acme", override_dir=str(tmp_path)).validate()
    (tmp_path / "sms" / "firm.j2").write_text("{{ amount.__class__.__mro__ }}")
    with pytest.raises(ValueError, match="firm"):  # the sandbox refuses internals
        SmsTemplates("Acme", override_dir=str(tmp_path)).validate()


def test_step_template_overrides_tier(tmp_path: Path) -> None:
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "reminder-v2.j2").write_text("Step two for {{ first_name }}.")
    t = SmsTemplates("Acme", override_dir=str(tmp_path))
    n = notice(customer_name="Ada Lovelace")
    assert t.render(n.model_copy(update={"template_id": "reminder-v2"})) == (
        "Step two for Ada. Reply STOP to opt out"
    )
    assert t.render(n).startswith("Hi Ada, a friendly reminder")


def email_channel(**kw: object) -> EmailChannel:
    s = EmailSettings(
        service_name="dispatcher-email",
        gmail_api_endpoint="http://127.0.0.1:9",
        gmail_token="t",
        gmail_sender=SENDER,
        **kw,  # type: ignore[arg-type]
    )
    return EmailChannel(s)


def test_email_mime_threading_and_disclosures() -> None:
    ch = email_channel(email_postal_address="Acme Collections, 1 Main St, Springfield")
    ch.templates.validate()
    n = notice(channel="email", tier=Tier.FIRM, customer_name="<b>Zoë</b> Test")
    earlier = ["A-1:s1:email", "A-1:s2:email"]
    rendered = ch.render(n, ThreadRef(tuple(earlier), "thread-9"))
    assert rendered["thread_id"] == "thread-9"
    msg = message_from_bytes(base64.b64decode(rendered["raw"]), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert msg["In-Reply-To"] == message_id_for(earlier[-1], SENDER)
    assert msg["References"].split() == [message_id_for(x, SENDER) for x in earlier]
    assert msg["Message-ID"] == message_id_for(n.notice_id, SENDER)
    for body in parts.values():
        assert "This communication is from a debt collector" in body
        assert "1 Main St" in body
    assert "<b>Zoë</b>" not in parts["text/html"] and "&lt;b&gt;" in parts["text/html"]  # autoescaped
    first = message_from_bytes(base64.b64decode(ch.render(n)["raw"]), policy=policy.default)
    assert first["In-Reply-To"] is None and first["References"] is None


def test_email_template_without_disclosure_fails_validation(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "final.txt.j2").write_text("Pay now. {{ unsubscribe_url }}")
    t = EmailTemplates(
        "Acme",
        "https://x.test/u/{notice_id}",
        disclosure="This is from a debt collector.",
        override_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match="disclosure"):
        t.validate()
