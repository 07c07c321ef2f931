"""Safety rules that always win over the model: the carrier keywords of every locale.

- the whole message is a keyword, ignoring case, accents, spaces and punctuation (`S.T.O.P!!`, `Opt-Out`,
  `dárse de BAJA`) -> opt-out (or HELP) with confidence 1;
- a sentence or clause of the reply is an unambiguous stop keyword, alone or with courtesy words only
  ("STOP. I'll pay on the 15th", "ALTO, le pago el viernes", "stop pls") -> opt-out: when a reply says
  several things, the opt-out wins (docs/intents.md). Ambiguous keywords (`cancel`, `end`, `fin`,
  `cancelar`: "cancel my autopay", "end of month", "cancelar todo" = pay it all off) count only as the whole
  message; inside a sentence a keyword is the model's to judge ("don't stop", "stop by the office"), and
  when the model is unsure of a possible opt-out, messages pause for a person (classifier.py);
- on a channel that declares its own opt-out words (`ChannelSpec.opt_out_keywords` in the channel registry),
  the whole message being one of them, compared the same way, is an opt-out of that channel too
  (rule `opt_out_keyword_channel`). The words never reach the model or its features."""

from __future__ import annotations

import functools
import re

from arrears_shared import channels
from arrears_shared.events import Intent

from .lexicon import lexicon
from .normalize import compact, normalize, words

_CLAUSES = re.compile(r"[.!?,;:\n\r]+|\s[-–—]\s")


def _is_polite_stop(clause: str) -> bool:
    lx = lexicon()
    text = f" {normalize(clause)} "
    for phrase in lx.courtesy_phrases:
        text = text.replace(f" {phrase} ", " ")
    toks = words(text)
    if not toks or len(toks) > 6:
        return False
    rest = [t for t in toks if t not in lx.courtesy]
    return bool(rest) and len(rest) <= 3 and compact(" ".join(rest)) in lx.opt_out_anywhere


@functools.cache
def channel_opt_out_keywords(channel: str | None) -> frozenset[str]:
    """The opt-out words `channel` declares, in compact form (none for an unknown channel)."""
    spec = channels.registered().get(channel) if channel else None
    return frozenset(compact(k) for k in spec.opt_out_keywords) if spec else frozenset()


def keyword_intent(text: str, channel: str | None = None) -> tuple[Intent, str] | None:
    """The intent a safety rule decides for `text` (a reply on `channel`), or None for the model to judge."""
    lx = lexicon()
    flat = compact(text)
    if flat in lx.opt_out_keywords:
        return Intent.OPT_OUT, "opt_out_keyword"
    if flat in lx.help_keywords:
        return Intent.HELP, "help_keyword"
    if flat and flat in channel_opt_out_keywords(channel):
        return Intent.OPT_OUT, "opt_out_keyword_channel"
    clauses = [c for c in _CLAUSES.split(text) if c.strip()]
    if any(_is_polite_stop(c) for c in clauses):
        return Intent.OPT_OUT, "opt_out_keyword_polite" if len(clauses) == 1 else "opt_out_keyword_sentence"
    # a keyword in capitals opening or closing the reply, the way carriers print it: "STOP I already paid"
    # (only when it stands out: not in an all-capitals reply, not after a negation: "DON'T STOP")
    raw = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text)
    if len(raw) < 2 or all(w.isupper() for w in raw):
        return None
    for i in (0, len(raw) - 1):
        word = raw[i]
        negated = i > 0 and normalize(raw[i - 1]).replace("'", "") in _NEGATIONS
        if word.isupper() and len(word) > 2 and compact(word) in lx.opt_out_anywhere and not negated:
            return Intent.OPT_OUT, "opt_out_keyword_sentence"
    return None


_NEGATIONS = {"dont", "don", "not", "never", "didnt", "no", "nunca", "sin", "wont", "cant", "doesnt"}
