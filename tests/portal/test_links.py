"""Personal payment links: mint, verify, refuse tampering, expiry and foreign keys; rotation; size."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from arrears_shared.events import Tier
from arrears_shared.links import (
    LinkClaims,
    LinkExpired,
    LinkInvalid,
    LinkSettings,
    LinkSigner,
    link_for_notice,
    pack,
    unpack,
)

KEY = "k" * 40
OTHER = "o" * 40
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def claims(notice_id: str = "ACC-000123:default:v3:s2:c0:sms", **kw: object) -> LinkClaims:
    base: dict[str, object] = dict(
        notice_id=notice_id,
        account_id="ACC-000123",
        channel="sms",
        tier=Tier.FIRM,
        issued_at=NOW,
        expires_at=NOW + timedelta(days=30),
    )
    base.update(kw)
    return LinkClaims(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_claim() -> None:
    s = LinkSigner(KEY)
    c = claims()
    assert s.verify(s.mint(c), now=NOW) == c


@pytest.mark.parametrize(
    "notice_id",
    [
        "ACC-000123:default:v3:s2:c0:sms",  # the segmenter's shape: packed
        "ACC-000123:default:v03:s2:c0:sms",  # looks alike but would not round-trip packed: verbatim
        "confirm:promise:ACC-000123:42",  # any other id: verbatim
        "ACC-000123:pol:with:colons:v1:s1:c9:sms",
    ],
)
def test_notice_ids_round_trip_exactly(notice_id: str) -> None:
    c = claims(notice_id)
    assert unpack(pack(c)) == c


def test_token_is_opaque_and_short_enough_for_sms() -> None:
    s = LinkSigner(KEY)
    token = s.mint(claims())
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret in (b"ACC-000123", b"default", b"sms"):
        assert secret not in raw  # no account id, no readable claim
    assert len(token) <= 64
    assert all(ch.isalnum() or ch in "-_" for ch in token)


def test_same_notice_same_link_other_notice_other_link() -> None:
    s = LinkSigner(KEY)
    assert s.mint(claims()) == s.mint(claims())
    assert s.mint(claims()) != s.mint(claims("ACC-000123:default:v3:s3:c0:sms"))


def test_every_single_bit_flip_is_refused() -> None:
    s = LinkSigner(KEY)
    raw = bytearray(base64.urlsafe_b64decode(s.mint(claims()) + "=="))
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            token = base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
            with pytest.raises(LinkInvalid):
                s.verify(token, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "!" * 40, "A" * 401, "AQ" + "A" * 40, "A" * 21])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(LinkInvalid):
        LinkSigner(KEY).verify(token, now=NOW)


def test_truncated_and_extended_tokens_are_refused() -> None:
    s = LinkSigner(KEY)
    token = s.mint(claims())
    for bad in (token[:-1], token[:-4], token + "A", token + "AAAA"):
        with pytest.raises(LinkInvalid):
            s.verify(bad, now=NOW)


def test_expired_link_is_refused_with_its_claims() -> None:
    s = LinkSigner(KEY)
    token = s.mint(claims())
    assert s.verify(token, now=NOW + timedelta(days=30) - timedelta(seconds=1))
    with pytest.raises(LinkExpired) as e:
        s.verify(token, now=NOW + timedelta(days=30))
    assert e.value.claims.notice_id.endswith(":sms")


def test_rotation_verifies_old_links_with_previous_key_and_mints_with_new() -> None:
    old = LinkSigner(OTHER)
    rotated = LinkSigner(KEY, previous=(OTHER,))
    old_token = old.mint(claims())
    assert rotated.verify(old_token, now=NOW) == claims()
    new_token = rotated.mint(claims())
    assert new_token != old_token
    with pytest.raises(LinkInvalid):
        old.verify(new_token, now=NOW)  # a signer without the new key cannot read new links
    with pytest.raises(LinkInvalid):
        LinkSigner(KEY).verify(old_token, now=NOW)  # previous key dropped: old links stop working


def test_keys_come_from_settings_and_short_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARREARS_LINK_KEY", raising=False)
    assert LinkSigner.from_settings(LinkSettings()) is None
    monkeypatch.setenv("ARREARS_LINK_KEY", KEY)
    monkeypatch.setenv("ARREARS_LINK_PREVIOUS_KEYS", f" {OTHER} ,")
    s = LinkSigner.from_settings(LinkSettings())
    assert s is not None
    assert s.verify(LinkSigner(OTHER).mint(claims()), now=NOW) == claims()
    with pytest.raises(ValueError):
        LinkSigner("short")


def test_link_for_notice_is_stable_and_whole_seconds() -> None:
    s = LinkSigner(KEY)
    at = NOW + timedelta(microseconds=123456)
    kw = dict(notice_id="A-1:p:v1:s1:c0:email", account_id="A-1", channel="email", tier=Tier.FINAL)
    url = link_for_notice(s, "https://pay.example.com/p/", issued_at=at, ttl=timedelta(days=7), **kw)  # type: ignore[arg-type]
    again = link_for_notice(s, "https://pay.example.com/p/", issued_at=at, ttl=timedelta(days=7), **kw)  # type: ignore[arg-type]
    assert url == again and url.startswith("https://pay.example.com/p/")
    c = s.verify(url.rsplit("/", 1)[1], now=NOW)
    assert c.issued_at == NOW and c.expires_at == NOW + timedelta(days=7) and c.tier is Tier.FINAL
