"""Safety rules that always win over the model: the carrier keywords of every locale.

- the whole message is a keyword, ignoring case, accents, spaces and punctuation (`S.T.O.P!!`, `Opt-Out`,
  `dárse de BAJA`) -> opt-out (or HELP) with confidence 1;
- one opt-out keyword surrounded only by courtesy words (`STOP please`, `ALTO por favor ya`) -> opt-out.

A keyword inside a sentence is left to the model ("don't stop", "stop by the office", "fin de mes te pago"),
which was trained on such traps; when the model is unsure of a possible opt-out, SMS pauses for a person
(classifier.py)."""

from __future__ import annotations

from arrears_shared.events import Intent

from .lexicon import lexicon
from .normalize import compact, words


def keyword_intent(text: str) -> tuple[Intent, str] | None:
    lx = lexicon()
    flat = compact(text)
    if flat in lx.opt_out_keywords:
        return Intent.OPT_OUT, "opt_out_keyword"
    if flat in lx.help_keywords:
        return Intent.HELP, "help_keyword"
    toks = words(text)
    if not toks or len(toks) > 8:
        return None
    rest = [t for t in toks if t not in lx.courtesy]
    if rest and len(rest) <= 3 and compact(" ".join(rest)) in lx.opt_out_keywords and len(rest) < len(toks):
        return Intent.OPT_OUT, "opt_out_keyword_polite"
    return None
