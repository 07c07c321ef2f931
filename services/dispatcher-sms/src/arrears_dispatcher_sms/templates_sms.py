"""SMS templates: one per tier in `templates/sms/<tier>.j2`, rendered in a sandbox and validated at start-up."""

from __future__ import annotations

from arrears_shared.delivery.render import notice_context, sample_notice, sandbox
from arrears_shared.events import NoticeDue, Tier
from jinja2 import TemplateError

FOOTER = "Reply STOP to opt out"
MAX_CHARS = 1600


class SmsTemplates:
    def __init__(self, brand: str, override_dir: str | None = None) -> None:
        self.brand = brand
        self.env = sandbox("arrears_dispatcher_sms", "templates", override_dir)

    def render(self, notice: NoticeDue) -> str:
        """The SMS text for a notice. Raises ValueError when it cannot be rendered or is too long."""
        try:
            body = self.env.get_template(f"sms/{notice.tier.value}.j2").render(
                notice_context(notice, self.brand)
            )
        except TemplateError as e:
            raise ValueError(f"template sms/{notice.tier.value}.j2: {type(e).__name__}: {e}") from e
        body = " ".join(body.split())
        if not body.endswith(FOOTER):
            body = f"{body} {FOOTER}" if body else FOOTER
        if len(body) > MAX_CHARS:
            raise ValueError(f"SMS is {len(body)} characters, more than {MAX_CHARS}")
        return body

    def validate(self) -> None:
        """Render every tier with a sample notice; raises at start-up if any template is broken."""
        for tier in Tier:
            text = self.render(sample_notice(tier))
            if not text.endswith(FOOTER):
                raise ValueError(f"sms/{tier.value}.j2 does not end with the opt-out footer")
