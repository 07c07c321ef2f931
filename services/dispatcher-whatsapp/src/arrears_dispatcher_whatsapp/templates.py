"""Which approved WhatsApp template carries which notice: a YAML mapping, validated at start-up.

A business-initiated WhatsApp message must be a message template approved by Meta; our Jinja templates
cannot be sent as they are. The mapping (packaged ``templates/whatsapp.yaml``, or
``ARREARS_WHATSAPP_TEMPLATES_FILE``) names, for each of our templates and each locale, the WhatsApp template,
its language code and its body parameters ``{{1}}``, ``{{2}}``, ... in order, each taken from the notice::

    default_locale: en
    dunning:                    # a policy step's template_id, else its tier
      reminder:
        en: {name: arrears_payment_reminder, language: en_US, params: [first_name, amount, brand]}
        es: {name: arrears_payment_reminder, language: es_MX, params: [first_name, amount, brand]}
    answers:                    # a reply answer (purpose) once the 24-hour window has closed
      help:
        en: {name: arrears_help, language: en_US, params: [brand]}

Lookup for template_id ``final-v1``, tier ``final``, locale ``es-MX`` (first found wins): ``final-v1`` in
es-MX, es, then the default locale; then ``final`` in the same order. Parameters are the names of
`PARAMS` (the notice context of every dispatcher, plus ``text``: an answer's text on one line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from arrears_shared.delivery.render import notice_context, one_line, sample_notice
from arrears_shared.delivery.templates import locale_chain
from arrears_shared.events import NoticeDue, Tier
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .graph_client import template_message

PARAMS = frozenset(
    {
        "customer_name",
        "first_name",
        "brand",
        "amount",
        "days_past_due",
        "aging_bucket",
        "tier",
        "step",
        "text",
    }
)
MAX_PARAM_CHARS = 1024  # longest value we put in one body parameter
_SPACES = re.compile(r" {4,}")


class TemplateRef(BaseModel):
    """One approved WhatsApp template in one language, with the notice fields its body parameters take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9_]{1,512}$", description="template name as approved in WhatsApp Manager"
    )
    language: str = Field(
        pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$", description="WhatsApp language code, e.g. en_US"
    )
    params: tuple[str, ...] = ()

    @field_validator("params")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [p for p in v if p not in PARAMS]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(PARAMS)}")
        return v


class TemplateMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_locale: str = "en"
    dunning: dict[str, dict[str, TemplateRef]] = Field(default_factory=dict)
    answers: dict[str, dict[str, TemplateRef]] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chosen:
    """A template chosen for a notice, with its parameter values."""

    key: str  # e.g. "dunning/final/es"
    ref: TemplateRef
    params: list[str]

    def message(self) -> dict[str, Any]:
        """The ``{"type": "template", "template": {...}}`` part of a send."""
        return {
            "type": "template",
            "template": template_message(self.ref.name, self.ref.language, self.params),
        }


def _param_value(value: Any) -> str:
    # WhatsApp refuses a parameter with new-lines, tabs or more than 4 consecutive spaces (or an empty one).
    text = _SPACES.sub("   ", one_line(str(value)))
    return (text or "-")[:MAX_PARAM_CHARS]


def load_mapping(path: str | None = None) -> TemplateMapping:
    """The mapping from `path`, else the packaged one. ValueError naming the file when it is invalid."""
    if path:
        source, where = Path(path).read_text(encoding="utf-8"), path
    else:
        source = (
            resources.files("arrears_dispatcher_whatsapp")
            .joinpath("templates/whatsapp.yaml")
            .read_text("utf-8")
        )
        where = "arrears_dispatcher_whatsapp/templates/whatsapp.yaml"
    try:
        return TemplateMapping.model_validate(yaml.safe_load(source) or {})
    except (yaml.YAMLError, ValidationError) as e:
        raise ValueError(f"WhatsApp template mapping {where}: {e}") from e


class WhatsAppTemplates:
    def __init__(self, brand: str, *, path: str | None = None, default_locale: str | None = None) -> None:
        self.brand = brand
        self.mapping = load_mapping(path)
        self.default_locale = default_locale or self.mapping.default_locale

    def _lookup(
        self, section: Mapping[str, Mapping[str, TemplateRef]], names: list[str], locale: str | None
    ) -> tuple[str, str, TemplateRef] | None:
        locales = [loc or self.default_locale for loc in locale_chain(locale, self.default_locale)]
        for name in names:
            by_locale = section.get(name) or {}
            for loc in locales:
                ref = by_locale.get(loc)
                if ref is not None:
                    return name, loc, ref
        return None

    def context(self, notice: NoticeDue) -> dict[str, Any]:
        ctx = notice_context(notice, self.brand)
        ctx["text"] = notice.text or ""
        return ctx

    def _choose(
        self, kind: str, section: Mapping[str, Mapping[str, TemplateRef]], names: list[str], notice: NoticeDue
    ) -> Chosen | None:
        found = self._lookup(section, names, notice.locale)
        if found is None:
            return None
        name, loc, ref = found
        ctx = self.context(notice)
        return Chosen(f"{kind}/{name}/{loc}", ref, [_param_value(ctx[p]) for p in ref.params])

    def dunning(self, notice: NoticeDue) -> Chosen:
        """The template of a dunning notice. ValueError when the mapping has none for it."""
        names = [n for n in dict.fromkeys([notice.template_id, notice.tier.value]) if n]
        chosen = self._choose("dunning", self.mapping.dunning, names, notice)
        if chosen is None:
            raise ValueError(
                f"no WhatsApp template mapped for {names} in locale {notice.locale or self.default_locale!r}"
            )
        return chosen

    def answer(self, notice: NoticeDue) -> Chosen | None:
        """The template of a reply answer (by purpose) for use outside the 24-hour window, or None."""
        return self._choose("answers", self.mapping.answers, [notice.purpose], notice)

    def validate(self) -> None:
        """At start-up: every tier has a template in the default locale, and every entry renders for a
        sample notice. Raises ValueError naming what is missing."""
        for tier in Tier:
            if self._lookup(self.mapping.dunning, [tier.value], None) is None:
                raise ValueError(
                    f"WhatsApp template mapping: no template for tier {tier.value!r} in the default locale"
                    f" {self.default_locale!r}"
                )
        for section, entries in (("dunning", self.mapping.dunning), ("answers", self.mapping.answers)):
            for name, by_locale in entries.items():
                for loc in by_locale:
                    sample = sample_notice(Tier.REMINDER).model_copy(
                        update={"locale": loc, "text": "Sample answer"}
                    )
                    chosen = self._choose(section, {name: by_locale}, [name], sample)
                    if chosen is None or len(chosen.params) != len(chosen.ref.params):
                        raise ValueError(f"WhatsApp template mapping: {section}/{name}/{loc} does not render")
