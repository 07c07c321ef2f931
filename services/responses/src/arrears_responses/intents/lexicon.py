"""Per-language word lists (`locales/*.yaml`), merged into one lexicon: the carrier keywords and the words
promise extraction needs. A language is added by dropping a file here (plus its corpus and templates)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .normalize import compact, normalize

LOCALES_DIR = Path(__file__).with_name("locales")


@dataclass(frozen=True, eq=False)  # hashed by identity: one per process (cached)
class Lexicon:
    locales: tuple[str, ...]
    opt_out_keywords: frozenset[str]  # compact form: "optout", "darsedebaja"
    help_keywords: frozenset[str]
    opt_out_anywhere: frozenset[str]  # compact form: keywords that count inside a longer reply
    courtesy_phrases: tuple[str, ...]  # normalised multi-word courtesy phrases ("por favor")
    courtesy: frozenset[str]  # normalised words allowed around a keyword
    today: tuple[str, ...]
    tomorrow: tuple[str, ...]
    day_after_tomorrow: tuple[str, ...]
    next_week: tuple[str, ...]
    next_month: tuple[str, ...]
    end_of_month: tuple[str, ...]
    first_of_month: tuple[str, ...]
    weekdays: dict[str, int]
    months: dict[str, int]
    in_words: tuple[str, ...]
    day_units: tuple[str, ...]
    week_units: tuple[str, ...]
    ordinal_prefixes: tuple[str, ...]
    numbers: dict[str, int]
    money_after: dict[str, str]
    money_before: dict[str, str]
    instalments: dict[str, tuple[str, ...]]  # period -> phrases
    cues: dict[str, re.Pattern[str]]  # feature name -> pattern (all locales' alternatives)


_WEEKDAY_INDEX = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                              "saturday", "sunday"))}  # fmt: skip


def _phrases(items: list[Any]) -> list[str]:
    return [normalize(str(x)) for x in items]


@functools.cache
def lexicon(directory: Path = LOCALES_DIR) -> Lexicon:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RuntimeError(f"no locale files in {directory}")
    acc: dict[str, Any] = {
        "locales": [], "opt_out": set(), "help": set(), "courtesy": set(), "anywhere": set(), "phrases": [], "weekdays": {}, "months": {}, "numbers": {},
        "money_after": {}, "money_before": {}, "instalments": {}, "cues": {},
    }  # fmt: skip
    lists = ("today", "tomorrow", "day_after_tomorrow", "next_week", "next_month", "end_of_month",
             "first_of_month", "in_words", "day_units", "week_units", "ordinal_prefixes")  # fmt: skip
    for name in lists:
        acc[name] = []
    for f in files:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        acc["locales"].append(data["locale"])
        acc["opt_out"] |= {compact(k) for k in data["keywords"]["opt_out"]}
        acc["help"] |= {compact(k) for k in data["keywords"]["help"]}
        acc["anywhere"] |= {compact(k) for k in data["keywords"].get("opt_out_anywhere", [])}
        for phrase in (normalize(str(p)) for p in data.get("courtesy", [])):
            if " " in phrase:
                acc["phrases"].append(phrase)
            else:
                acc["courtesy"].add(phrase)
        d = data["dates"]
        for name in lists:
            acc[name] += [p for p in _phrases(d.get(name, [])) if p not in acc[name]]
        for day, names in d["weekdays"].items():
            acc["weekdays"] |= {normalize(n): _WEEKDAY_INDEX[day] for n in names}
        for month, names in d["months"].items():
            acc["months"] |= {normalize(n): int(month) for n in names}
        acc["numbers"] |= {normalize(k): int(v) for k, v in data.get("numbers", {}).items()}
        acc["money_after"] |= {normalize(k): v for k, v in data["money"]["after"].items()}
        acc["money_before"] |= {k.lower(): v for k, v in data["money"]["before"].items()}
        for name, patterns in data.get("cues", {}).items():
            acc["cues"].setdefault(name, []).extend(patterns)
        for period, phrases in data["instalments"].items():
            acc["instalments"].setdefault(period, [])
            acc["instalments"][period] += _phrases(phrases)
    return Lexicon(
        locales=tuple(acc["locales"]),
        opt_out_keywords=frozenset(acc["opt_out"]),
        help_keywords=frozenset(acc["help"]),
        courtesy=frozenset(acc["courtesy"]),
        opt_out_anywhere=frozenset(acc["anywhere"]),
        courtesy_phrases=tuple(sorted(acc["phrases"], key=len, reverse=True)),
        weekdays=acc["weekdays"],
        months=acc["months"],
        numbers=acc["numbers"],
        money_after=acc["money_after"],
        money_before=acc["money_before"],
        instalments={k: tuple(v) for k, v in acc["instalments"].items()},
        cues={name: re.compile("|".join(f"(?:{p})" for p in ps)) for name, ps in sorted(acc["cues"].items())},
        **{name: tuple(acc[name]) for name in lists},
    )
