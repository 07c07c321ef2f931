"""Every dunning tier has its own template in every channel and every language we speak (a missing one would
silently fall back to English), and the Spanish emails read as Spanish, carry the notice's personal link in
both parts, and keep the unsubscribe link and disclosures; the way a Spanish-locale account is chosen
(`es-MX` -> `es`) picks them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email import message_from_bytes, policy
from importlib import resources

import pytest
from arrears_dispatcher_email.channel import EmailChannel, EmailTemplates
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.templates_sms import SmsTemplates
from arrears_shared import links
from arrears_shared.delivery.render import sample_notice
from arrears_shared.events import Tier

KEY = "email-es-test-link-key-0123456789abcdefgh"
BASE = "https://pay.acme.test/p/"
LOCALES = ("en", "es")  # the default language at the channel root, the others in a folder each
DEFAULT = "en"
# channel -> (package, the files one tier needs)
CHANNELS = {
    "sms": ("arrears_dispatcher_sms", (".j2",)),
    "email": ("arrears_dispatcher_email", (".subject.j2", ".txt.j2", ".html.j2")),
}


def packaged(package: str, path: str) -> bool:
    return resources.files(package).joinpath("templates", path).is_file()


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("tier", list(Tier))
def test_every_tier_has_its_own_template_in_every_channel_and_language(
    channel: str, locale: str, tier: Tier
) -> None:
    package, suffixes = CHANNELS[channel]
    folder = f"{channel}/" if locale == DEFAULT else f"{channel}/{locale}/"
    missing = [
        f"{folder}{tier.value}{s}" for s in suffixes if not packaged(package, f"{folder}{tier.value}{s}")
    ]
    assert not missing, f"{package} lacks {missing}"


def test_the_template_set_is_exactly_what_the_dispatchers_validate() -> None:
    """Each dispatcher's own locale list (the folders it finds) is the languages above: a new language needs
    every tier of every channel, which the test above then requires."""
    sms = SmsTemplates("Acme").templates.locales()
    email = EmailTemplates("Acme", "https://acme.test/u/{notice_id}").templates.locales()
    assert sms == email == [None, *[loc for loc in LOCALES if loc != DEFAULT]]


@pytest.fixture
def link_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[links.LinkSigner]:
    monkeypatch.setenv("ARREARS_LINK_KEY", KEY)
    monkeypatch.setenv("ARREARS_LINK_PUBLIC_URL", BASE)
    links.reset_configuration()
    yield links.LinkSigner(KEY)
    monkeypatch.delenv("ARREARS_LINK_KEY")
    links.reset_configuration()


def channel() -> EmailChannel:
    return EmailChannel(
        EmailSettings(
            service_name="dispatcher-email",
            gmail_api_endpoint="http://127.0.0.1:9",
            gmail_token="t",
            gmail_sender="cobros@example.com",
            email_disclosure="Este es un intento de cobrar una deuda.",
            email_postal_address="Calle Falsa 123, Ciudad de México",
        )
    )


SPANISH = {
    Tier.REMINDER: ("Recordatorio:", "recordarle amablemente", "Un recordatorio amable"),
    Tier.FIRM: ("Acción necesaria:", "días de atraso", "Pago atrasado"),
    Tier.FINAL: ("Aviso final:", "AVISO FINAL", "Aviso final"),
}


@pytest.mark.parametrize("tier", list(Tier))
def test_a_spanish_locale_notice_gets_the_spanish_email_with_its_link(
    link_key: links.LinkSigner, tier: Tier
) -> None:
    ch = channel()
    ch.templates.validate()  # start-up: every tier in every locale renders with the required parts
    n = sample_notice(tier, channel="email", to="deudor@example.com").model_copy(update={"locale": "es-MX"})
    msg = message_from_bytes(base64.b64decode(ch.render(n)["raw"]), policy=policy.default)
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    subject, in_text, heading = SPANISH[tier]
    assert msg["Subject"].startswith(subject)
    assert in_text in parts["text/plain"] and f"<h2>{heading}</h2>" in parts["text/html"]
    assert 'lang="es"' in parts["text/html"]
    for english in ("past due", "overdue", "Unsubscribe", "Hi "):
        assert english not in parts["text/plain"] and english not in parts["text/html"], english
    [url] = [w for w in parts["text/plain"].split() if w.startswith(BASE)]
    claims = link_key.verify(url.removeprefix(BASE))
    assert (claims.notice_id, claims.channel, claims.tier) == (n.notice_id, "email", tier)
    assert f'href="{url}"' in parts["text/html"]
    assert (
        "Para dejar de recibir estos correos" in parts["text/plain"] and "Darse de baja" in parts["text/html"]
    )
    for required in ("Este es un intento de cobrar una deuda.", "Calle Falsa 123"):
        assert required in parts["text/plain"] and required in parts["text/html"]


def test_without_a_link_the_spanish_email_still_reads_well(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARREARS_LINK_KEY", raising=False)
    links.reset_configuration()
    n = sample_notice(Tier.FINAL, channel="email", to="d@example.com").model_copy(update={"locale": "es"})
    subject, text, html, _ = channel().templates.render(n)
    assert subject.startswith("Aviso final") and "http" not in text.split("Para dejar")[0]  # no link
    assert "acordar un plan de pagos" in text and "acordar un plan de pagos" in html
