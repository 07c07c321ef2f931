"""SMS templates: `templates/sms/[<locale>/]<template_id|tier>.j2`, sandboxed, validated at start-up.

Every SMS carries a way to opt out (Reg F 1006.6(e), CTIA): when the rendered text does not already contain
"STOP" (a localised template says it in its own words), the configured footer is appended. The text must fit
the configured number of segments, counted as GSM-7 or UCS-2 (`segments.py`).
"""

from __future__ import annotations

from arrears_shared.delivery.render import notice_context, sample_notice
from arrears_shared.delivery.templates import TemplateSet
from arrears_shared.events import NoticeDue, Tier

from .segments import Segments, count_segments

FOOTER = "Reply STOP to opt out"
MAX_CHARS = 1600  # QUO's content limit


class SmsTemplates:
    def __init__(
        self,
        brand: str,
        *,
        footer: str = FOOTER,
        max_segments: int = 3,
        override_dir: str | None = None,
        default_locale: str = "en",
    ) -> None:
        self.brand = brand
        self.footer = footer
        self.max_segments = max_segments
        self.templates = TemplateSet(
            "arrears_dispatcher_sms", "sms", override_dir=override_dir, default_locale=default_locale
        )

    def render_counted(self, notice: NoticeDue) -> tuple[str, Segments]:
        """The SMS text and its segment count. ValueError when it cannot be rendered or is too long.

        A non-dunning notice (the opt-out confirmation, the HELP answer; written by responses) carries its
        exact `text`: sent as is, no footer (a confirmation must not invite a second opt-out). Confirmations
        and payment retries without `text` are rendered from their template (`template_id` = the purpose)."""
        if notice.is_answer or (not notice.is_dunning and notice.text):
            if not notice.text:
                raise ValueError(f"{notice.purpose} notice without text")
            return notice.text[:MAX_CHARS], count_segments(notice.text[:MAX_CHARS])
        body = " ".join(self.templates.render(notice, notice_context(notice, self.brand)).split())
        if "STOP" not in body.upper():
            body = f"{body} {self.footer}" if body else self.footer
        segments = count_segments(body)
        if len(body) > MAX_CHARS:
            raise ValueError(f"SMS is {len(body)} characters, more than {MAX_CHARS}")
        if segments.count > self.max_segments:
            raise ValueError(
                f"SMS needs {segments.count} {segments.encoding} segments, more than the ceiling of"
                f" {self.max_segments} (ARREARS_SMS_MAX_SEGMENTS)"
            )
        return body, segments

    def render(self, notice: NoticeDue) -> str:
        return self.render_counted(notice)[0]

    def validate(self) -> None:
        """At start-up: every template only uses known variables, and every tier in every locale renders
        within the segment ceiling with an opt-out for a long sample notice. Raises naming the template."""
        sample = sample_notice(Tier.REMINDER)
        self.templates.check_variables(notice_context(sample, self.brand))
        for locale in self.templates.locales():
            for tier in Tier:
                self.render(sample_notice(tier).model_copy(update={"locale": locale}))
