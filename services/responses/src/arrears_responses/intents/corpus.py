"""The labelled reply corpus (`corpus/*.jsonl`, one reply per line; docs/intents.md) and its fixed
train/test split (`corpus/split.json`, made once with a fixed seed: `arrears intents split`)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from arrears_shared.events import Intent

from .classifier import is_email
from .clean import reply_text
from .normalize import compact

CORPUS_DIR = Path(__file__).with_name("corpus")
SPLIT_FILE = CORPUS_DIR / "split.json"
SPLIT_SEED = 20261204
TEST_FRACTION = 0.25
TRAIN_ONLY_PREFIXES = ("legacy-",)  # replies written alongside the old rules: never used to measure


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    intent: Intent
    lang: str
    channel: Literal["sms", "email"]
    received_at: datetime
    promise: dict[str, Any] | None = None

    @property
    def local_date(self) -> date:
        return self.received_at.date()

    @property
    def promise_amount_minor(self) -> int | None:
        amount = (self.promise or {}).get("amount")
        return None if amount is None else int(Decimal(str(amount)) * 100)


def _example(raw: dict[str, Any]) -> Example:
    return Example(
        id=str(raw["id"]),
        text=str(raw["text"]),
        intent=Intent(raw["intent"]),
        lang=str(raw.get("lang", "en")),
        channel=raw.get("channel", "sms"),
        received_at=datetime.fromisoformat(raw["received_at"]),
        promise=raw.get("promise"),
    )


def load_corpus(directory: Path = CORPUS_DIR) -> list[Example]:
    out: list[Example] = []
    for f in sorted(directory.glob("*.jsonl")):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    out.append(_example(json.loads(line)))
                except (KeyError, ValueError) as e:
                    raise ValueError(f"{f.name}:{n}: {e}") from e
    return out


def corpus_sha256(directory: Path = CORPUS_DIR) -> str:
    h = hashlib.sha256()
    for f in sorted(directory.glob("*.jsonl")) + [directory / "split.json"]:
        if f.exists():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def make_split(
    examples: list[Example], seed: int = SPLIT_SEED, fraction: float = TEST_FRACTION
) -> dict[str, Any]:
    """Stratified by (intent, language): `fraction` of each group goes to test, drawn with `seed`."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[str]] = {}
    for e in examples:
        if not e.id.startswith(TRAIN_ONLY_PREFIXES):
            groups.setdefault((e.intent.value, e.lang), []).append(e.id)
    test: list[str] = []
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        test += ids[: round(len(ids) * fraction)]
    return {"seed": seed, "test_fraction": fraction, "test": sorted(test)}


def load_split(path: Path = SPLIT_FILE) -> set[str]:
    return set(json.loads(path.read_text(encoding="utf-8"))["test"])


def same_text(text: str, channel: str = "sms") -> str:
    """What two replies must share to count as the same reply: the customer's own words (an email's quotes
    and signature removed), case, accents, spacing and punctuation ignored."""
    return compact(reply_text(text) if is_email(channel) else text)


def split_corpus(examples: list[Example], test_ids: set[str]) -> tuple[list[Example], list[Example]]:
    """(train, test). Replies added after the split was made are training data, except a reply that is the
    same text as a test reply (written twice by different authors): it never trains, so the test split
    stays unseen."""
    test = [e for e in examples if e.id in test_ids]
    held_out = {same_text(e.text, e.channel) for e in test}
    train = [e for e in examples if e.id not in test_ids and same_text(e.text, e.channel) not in held_out]
    return train, test
