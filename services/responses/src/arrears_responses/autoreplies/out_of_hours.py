"""The out-of-hours acknowledgement: a customer who writes while the team that answers them is closed is
told when it opens ("we're closed, we'll reply by Monday 7 December, 9:00 AM EST").

When (all of them):
- `ARREARS_RESPONSES_OUT_OF_HOURS_ACK` is on, the reply is matched to a live (not erased) account, on a
  channel that is acknowledged (`acknowledges_on`: a phone address, SMS and WhatsApp, or an email address),
  and arrived outside the working hours of the owning team (`ARREARS_RESPONSES_OUT_OF_HOURS_TEAM`), by the
  team's calendar as replicated from `team-calendars` (a team without a calendar is always open);
- the reply is not an opt-out, a possible opt-out or a HELP (HELP has its own answer), and the customer has
  not opted out on that channel (a confirmed opt-out answer or an opt-out reply on record);
- none was sent to this conversation (account, channel) in this closed period: the period is named by the
  instant it began, and `(account, channel, period)` is the primary key of `responses.out_of_hours_acks`.
  For email the conversation is the account's email too, whatever the sender address or thread: a customer
  who writes three emails (or from two addresses) in one night is told once.
- email only (gmail/service.py): the email is a reply (not an automatic reply, a bounce or anything with
  `Auto-Submitted` other than `no`, `Precedence: bulk|junk|auto_reply`), did not come through a mailing list
  (`Precedence: list`, `List-Id`) and is not from a role address that must never be answered (`no_ack_sender`).

How: like the HELP answer, a `notice-due` (purpose `out_of_hours_ack`, the exact `text`) written to the
outbox with the reply, which that channel's dispatcher sends. Unlike HELP it is not exempt: the dispatcher
applies opt-outs, holds and the contact-hours gate to it (a deferred one expires when the team opens: then
a person answers instead). On email the dispatcher sends the `text` as a plain-text email with
`Auto-Submitted: auto-replied`, `In-Reply-To` the customer's Message-ID (`in_reply_to`). The text is in the
customer's language (guessed from the reply: en, es; else `ARREARS_RESPONSES_DEFAULT_LOCALE`) and the opening
time in the customer's time zone (else the team's).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arrears_shared.channels import kind_of
from arrears_shared.events import Intent
from arrears_shared.stream.transaction import Transaction
from arrears_shared.working_time import TeamCalendar, closed_period_start, is_open, next_opening
from prometheus_client import Counter
from sqlalchemy import text

from ..contacts.lookup import address_index, is_live
from ..settings import ResponsesSettings
from .calendars import calendar_of
from .service import answers_on, automatic_notice

log = logging.getLogger(__name__)
PURPOSE = "out_of_hours_ack"
NO_ACK_INTENTS = (Intent.OPT_OUT, Intent.HELP)
ACKS = Counter(
    "arrears_responses_out_of_hours_acks_total",
    "Out-of-hours acknowledgements written",
    ["channel", "locale"],
)

DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}
MONTHS = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "es": (
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ),
}
LOCALES = tuple(DAYS)
# Senders an automatic answer must never go to (RFC 3834 section 2: list owners and request addresses,
# mailer daemons; no-reply addresses would bounce or loop).
_NO_ACK_SENDER = re.compile(
    r"^(?:owner-.*|.*-request|.*-owner|mailer-daemon|mail-daemon|postmaster|listserv|majordomo|"
    r"no-?reply|do-?not-?reply|noreply-.*)@",
    re.I,
)


def acknowledges_on(channel: str) -> bool:
    """Whether replies on `channel` are acknowledged out of hours: the automatic-answer channels and email."""
    kind = kind_of(channel)
    return answers_on(channel) or (kind == "email" if kind else channel == "email")


def no_ack_sender(address: str) -> bool:
    """An email address no automatic answer goes to (a list, a daemon, a no-reply address)."""
    return bool(_NO_ACK_SENDER.match(address.strip()))


# Words (accents removed, lower case) that are Spanish and not English: two of them, or one with ¿ ¡ ñ or
# an accented letter, make the reply Spanish.
_ES_WORDS = frozenset(
    "hola gracias pago pague pagar pagare cuenta deuda favor quiero puedo manana llamar llamenme necesito "
    "tengo cuando cuanto debo buenas buenos dias tardes noches senor senora ayuda dinero semana hoy ya "
    "por que porque esta estoy mi mis su usted ustedes nosotros para con el la los las una uno del "
    "trabajo quincena viernes lunes martes miercoles jueves sabado domingo mes año ano".split()
)
_WORD = re.compile(r"[a-záéíóúüñ]+")
_STRIP = str.maketrans("áéíóúüñ", "aeiouun")


def guess_locale(reply_text: str, default: str) -> str:
    """The customer's language from what they wrote: `es` or `en`; `default` when it cannot tell."""
    low = reply_text.lower()
    words = [w.translate(_STRIP) for w in _WORD.findall(low)]
    spanish = sum(w in _ES_WORDS for w in words)
    marks = any(c in low for c in "¿¡ñáéíóú")
    if spanish >= 2 or (spanish >= 1 and marks):
        return "es"
    if words and not marks:
        return "en"
    return default if default in LOCALES else "en"


def format_opening(at: datetime, zone: ZoneInfo, locale: str) -> str:
    """`at` as a person reads it in `locale`, in `zone` (with its abbreviation)."""
    local = at.astimezone(zone)
    day, month = DAYS[locale][local.weekday()], MONTHS[locale][local.month - 1]
    abbr = local.strftime("%Z")
    if locale == "es":
        return f"el {day} {local.day} de {month} a las {local:%H:%M} ({abbr})"
    hour = local.hour % 12 or 12
    return f"{day}, {month} {local.day} at {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'} {abbr}"


def ack_text(settings: ResponsesSettings, locale: str, opens: str) -> str:
    template = settings.out_of_hours_texts().get(locale) or settings.out_of_hours_texts()["en"]
    return template.replace("{brand}", settings.responses_brand_name).replace("{opens}", opens)


def customer_zone(timezone: str | None, cal: TeamCalendar) -> ZoneInfo:
    try:
        return ZoneInfo(timezone) if timezone else cal.zone
    except (ZoneInfoNotFoundError, ValueError):
        return cal.zone


async def _opted_out(tx: Transaction, account_id: str, channel: str, address: str) -> bool:
    """What responses knows of an opt-out on this channel: an opt-out reply from the account or a confirmed
    opt-out of the address. (The dispatcher's own opt-out table is checked again before the send.)"""
    row = await tx.conn.execute(
        text(
            f"""SELECT 1 FROM {tx.schema}.replies WHERE account_id = :acc AND channel = :ch AND intent = 'opt_out'
            UNION ALL
            SELECT 1 FROM {tx.schema}.auto_replies WHERE channel = :ch AND purpose = 'opt_out_confirmation'
              AND (address_bidx = :b OR account_id = :acc)
            LIMIT 1"""
        ),
        {"acc": account_id, "ch": channel, "b": address_index(channel, address)},
    )
    return row.first() is not None


async def maybe_acknowledge(
    tx: Transaction,
    settings: ResponsesSettings,
    *,
    intent: Intent,
    possible_opt_out: bool,
    channel: str,
    account_id: str,
    reply_id: str,
    address: str,
    reply_text: str,
    received_at: datetime,
    timezone: str | None,
    in_reply_to: str | None = None,
) -> str | None:
    """Emit the acknowledgement of a reply that came in out of hours, if one is due. Returns its notice id.
    `in_reply_to`: the Message-ID of the customer's email (email only), so the acknowledgement threads."""
    if not settings.responses_out_of_hours_ack or not acknowledges_on(channel):
        return None
    if intent in NO_ACK_INTENTS or possible_opt_out:
        return None
    team = settings.responses_out_of_hours_team
    cal = await calendar_of(tx.conn, tx.schema, team)
    if cal is None or is_open(received_at, cal):
        return None
    if not await is_live(tx.conn, account_id) or await _opted_out(tx, account_id, channel, address):
        return None
    closed_since = closed_period_start(received_at, cal)
    opens = next_opening(received_at, cal)
    if opens <= datetime.now(UTC):  # read late (a backlog): the team is open again, a person answers
        return None
    notice_id = f"{account_id}:auto:{PURPOSE}:{reply_id}"
    claimed = await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.out_of_hours_acks (account_id, channel, closed_since, notice_id,
                reply_id, team, opens_at, created_at)
            VALUES (:acc, :ch, :since, :n, :r, :t, :opens, :at) ON CONFLICT DO NOTHING RETURNING 1"""
        ),
        {
            "acc": account_id,
            "ch": channel,
            "since": closed_since,
            "n": notice_id,
            "r": reply_id,
            "t": team,
            "opens": opens,
            "at": received_at,
        },
    )
    if claimed.first() is None:  # this conversation was told already in this closed period
        return None
    locale = guess_locale(reply_text, settings.responses_default_locale)
    body = ack_text(settings, locale, format_opening(opens, customer_zone(timezone, cal), locale))
    tx.emit(
        automatic_notice(
            account_id=account_id,
            notice_id=notice_id,
            channel=channel,
            address=address,
            purpose=PURPOSE,
            text=body,
            received_at=received_at,
            expires_at=opens,  # once the team is open a person answers: a late acknowledgement is dropped
            timezone=timezone,
            locale=locale,
            in_reply_to=in_reply_to,
        ),
        id=f"notice-due:{notice_id}",
    )
    ACKS.labels(channel, locale).inc()
    log.info(
        "out-of-hours acknowledgement", extra={"reply_id": reply_id, "channel": channel, "locale": locale}
    )
    return notice_id
