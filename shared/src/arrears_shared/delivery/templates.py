"""Template sets of a dispatcher: `<channel>/[<locale>/]<name><suffix>` in a sandboxed, strict Jinja2
environment, chosen per policy step (`template_id`), tier and locale, and validated at start-up.

Lookup for a notice with template_id `final-v1`, tier `final`, locale `es-MX` (first existing wins):
`sms/es-MX/final-v1.j2`, `sms/es-MX/final.j2`, `sms/es/final-v1.j2`, `sms/es/final.j2`, `sms/final-v1.j2`,
`sms/final.j2`. Templates at the channel root are the default language.

`validate()` parses every template of the channel and fails, naming the template, when one uses a variable
the dispatcher does not provide (found statically, so a variable inside a rarely taken branch fails too),
or when rendering it with a sample notice fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import Template, TemplateError, TemplateNotFound, meta
from jinja2.sandbox import SandboxedEnvironment

from ..events import NoticeDue
from .render import sandbox


def locale_chain(locale: str | None, default: str) -> list[str]:
    """`es_MX` -> ["es-MX", "es", ""] ("" = channel root, the default language)."""
    out: list[str] = []
    tag = (locale or "").replace("_", "-").strip()
    if tag and tag.lower() != default.lower():
        out.append(tag)
        lang = tag.split("-", 1)[0]
        if lang != tag and lang.lower() != default.lower():
            out.append(lang)
    out.append("")
    return out


class TemplateSet:
    def __init__(
        self,
        package: str,
        channel: str,
        *,
        override_dir: str | None = None,
        autoescape: bool | Callable[[str | None], bool] = False,
        default_locale: str = "en",
    ) -> None:
        self.channel = channel
        self.default_locale = default_locale
        self.env: SandboxedEnvironment = sandbox(package, "templates", override_dir, autoescape=autoescape)
        # The template chosen per candidate list. Templates are validated at start-up, so a file edited
        # while the service runs is not picked up (it would not have been validated): restart to change them.
        # Without this cache every render re-stats each candidate file (Jinja's auto-reload check) and
        # raises TemplateNotFound for the missing ones.
        self._chosen: dict[tuple[str, ...], Template] = {}

    def candidates(self, notice: NoticeDue, suffix: str) -> list[str]:
        names = [n for n in dict.fromkeys([notice.template_id, notice.tier.value]) if n]
        out: list[str] = []
        for loc in locale_chain(notice.locale, self.default_locale):
            prefix = f"{self.channel}/{loc}/" if loc else f"{self.channel}/"
            out.extend(f"{prefix}{n}{suffix}" for n in names)
        return out

    def render(self, notice: NoticeDue, context: Mapping[str, Any], suffix: str = ".j2") -> str:
        """Render the best template for the notice. ValueError (naming the template) when it fails."""
        candidates = self.candidates(notice, suffix)
        key = tuple(candidates)
        template = self._chosen.get(key)
        if template is None:
            try:
                template = self.env.select_template(candidates)
            except TemplateNotFound as e:
                raise ValueError(f"no template among {candidates}") from e
            if len(self._chosen) < 10_000:
                self._chosen[key] = template
        try:
            return template.render(context)
        except TemplateError as e:
            raise ValueError(f"template {template.name}: {type(e).__name__}: {e}") from e

    def names(self) -> list[str]:
        return [
            n for n in self.env.list_templates() if n.startswith(f"{self.channel}/") and n.endswith(".j2")
        ]

    def check_variables(self, allowed: Iterable[str]) -> None:
        """Every template of the channel only uses variables in `allowed` (ValueError naming it otherwise)."""
        known = set(allowed)
        for name in self.names():
            source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            try:
                ast = self.env.parse(source)
            except TemplateError as e:
                raise ValueError(f"template {name}: {type(e).__name__}: {e}") from e
            unknown = meta.find_undeclared_variables(ast) - known
            if unknown:
                raise ValueError(f"template {name}: unknown variable(s) {', '.join(sorted(unknown))}")

    def locales(self) -> list[str | None]:
        """The default language plus every locale folder present."""
        found: set[str] = set()
        for name in self.names():
            parts = name.split("/")
            if len(parts) == 3:
                found.add(parts[1])
        return [None, *sorted(found)]
