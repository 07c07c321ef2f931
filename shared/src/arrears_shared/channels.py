"""The channel registry: every way Arrears can reach a customer, declared by the package that sends it.

A dispatcher package declares `CHANNEL = ChannelSpec(...)` and names it in its `pyproject.toml` under the
entry-point group `arrears.channels`. Everything that used to spell out "sms and email" reads the registry
instead: the segmenter (which channels an account can be reached on, consent, caps, fallback), ingest (which
sheet columns hold a channel's address and opt-in), the responses service (whose channel a reply came on) and
the console. Adding a channel is a new package plus its templates, configuration, deployment and docs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal

ENTRY_POINT_GROUP = "arrears.channels"
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,20}$")

AddressKind = Literal["phone", "email"]
Consent = Literal["implied", "opt_in"]


class ChannelError(ValueError):
    """An unknown channel, or a declaration that contradicts itself or another."""


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel, as the rest of the platform needs to know it (the provider details stay in the package).

    - `address_kind`: how an address is validated, normalised (E.164 / lower-case email) and masked.
    - `consent`: `implied` = the account's contact consent covers it (an existing business relationship);
      `opt_in` = nothing business-initiated is sent before the customer's recorded opt-in (WhatsApp).
    - `sheet_columns` / `consent_columns`: PME sheet headers (case-insensitive aliases) holding the address
      and, for `opt_in` channels, the opt-in (a date or yes/no).
    - `opt_out_keywords`: words that opt the customer out of this channel on top of the carrier keywords.
    - `max_per_week`: at most this many dunning messages per account per rolling 7 days on this channel.

    Which channel a step falls back to is policy (the segmenter's policies list a step's channels in order),
    not a property of the channel.
    """

    name: str
    label: str
    address_kind: AddressKind
    dispatcher: str
    provider: str
    consent: Consent = "implied"
    sheet_columns: tuple[str, ...] = ()
    consent_columns: tuple[str, ...] = ()
    opt_out_keywords: tuple[str, ...] = ()
    max_per_week: int | None = None
    order: int = 100

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ChannelError(f"channel name {self.name!r} must be lower-case letters, digits or _")
        if self.consent == "opt_in" and not self.consent_columns:
            raise ChannelError(f"{self.name} needs an opt-in but names no column that records it")
        if self.max_per_week is not None and self.max_per_week < 1:
            raise ChannelError(f"{self.name}: max_per_week must be at least 1")


@functools.cache
def registered() -> Mapping[str, ChannelSpec]:
    """Every installed channel, in declaration order."""
    found: dict[str, ChannelSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ChannelSpec):
            raise ChannelError(f"entry point {ep.value} is a {type(spec).__name__}, not a ChannelSpec")
        if spec.name != ep.name:
            raise ChannelError(f"entry point {ep.name!r} declares channel {spec.name!r}")
        found[spec.name] = spec
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def names() -> tuple[str, ...]:
    return tuple(registered())


def get(name: str) -> ChannelSpec:
    try:
        return registered()[name]
    except KeyError:
        raise ChannelError(f"unknown channel {name!r}; installed: {list(registered())}") from None


def of_kind(kind: AddressKind) -> tuple[ChannelSpec, ...]:
    return tuple(s for s in registered().values() if s.address_kind == kind)


def kind_of(name: str) -> AddressKind | None:
    """The address kind of channel `name`, None for a channel this installation does not have."""
    spec = registered().get(name)
    return spec.address_kind if spec else None
