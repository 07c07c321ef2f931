"""Personal payment links: one opaque, signed, expiring token per notice.

A notice's link (`{ARREARS_LINK_BASE_URL}<token>`) names the notice it came in, so a click is attributed to
the message, its channel and tier (the portal publishes `link-clicked`). Anyone may read a text message, so the
token shows nothing: its claims (notice id, account id, channel, tier, issued, expiry) are encrypted and
authenticated with a synthetic IV (SIV construction from HMAC-SHA256 and AES-CTR):

    token = base64url( version | tag[12] | AES-CTR(enc_key, iv=tag, claims) )
    tag   = HMAC-SHA256(mac_key, version | claims)[:12]

Changing one bit changes the recomputed tag, so tampering is refused; the token is deterministic (the same
notice gets the same link, however often the dispatcher renders it after a crash). Claims are packed in a
compact binary form (the segmenter's notice ids `<account>:<policy>:v<n>:s<n>:c<n>:<channel>` shrink to the
policy and three small numbers), so a whole link fits easily in an SMS.

Keys: `ARREARS_LINK_KEY` signs new links; `ARREARS_LINK_PREVIOUS_KEYS` (comma-separated) still verify links
minted before a rotation, until they expire. Secrets never live in code or in the database. A wrong key, a
truncated token, a forged one and an unknown version all raise `LinkInvalid` — with no hint which.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import Field, SecretStr

from .events import NoticeDue, Tier
from .settings import ArrearsSettings

VERSION = 1
TAG_BYTES = 12  # 96 bits: a forgery needs ~2^95 online guesses, and the portal rate-limits every address
MIN_KEY_CHARS = 32
_TIERS: tuple[Tier | None, ...] = (None, Tier.REMINDER, Tier.FIRM, Tier.FINAL)
_SEGMENTER_ID = re.compile(r"^(?P<policy>.+):v(?P<v>\d+):s(?P<s>\d+):c(?P<c>\d+)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,400}$")


class LinkSettings(ArrearsSettings):
    """Settings of services that mint links (the dispatchers' render step) or verify them (the portal)."""

    link_key: SecretStr | None = Field(
        None,
        description="Key that signs and encrypts payment links (at least 32 characters, e.g. "
        "`openssl rand -base64 48`). Unset = notices carry no personal link and the portal refuses every link",
    )
    link_previous_keys: SecretStr | None = Field(
        None,
        description="Retired link keys (comma-separated) that still verify links minted before a rotation; "
        "drop one once `ARREARS_LINK_TTL_DAYS` have passed since the rotation",
    )
    link_public_url: str = Field(
        "http://127.0.0.1:8090/p/",
        description="Public address of the portal's link route; a notice's link is this followed by the token",
    )
    link_ttl_days: int = Field(
        30, ge=1, le=365, description="How long a notice's link opens the portal after the notice was sent"
    )


class LinkError(ValueError):
    """A token that does not open the portal."""


class LinkInvalid(LinkError):
    """Malformed, tampered with, signed with a key we do not hold, or of an unknown version."""


class LinkExpired(LinkError):
    """Authentic but past its expiry (`claims` is set: the portal may say when it expired, nothing more)."""

    def __init__(self, claims: LinkClaims) -> None:
        super().__init__("link expired")
        self.claims = claims


@dataclass(frozen=True, slots=True)
class LinkClaims:
    notice_id: str
    account_id: str
    channel: str
    tier: Tier | None
    issued_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class _Key:
    mac: bytes
    enc: bytes

    @classmethod
    def derive(cls, secret: str) -> _Key:
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"a link key must be at least {MIN_KEY_CHARS} characters")
        raw = secret.encode()
        return cls(
            mac=hmac.new(raw, b"arrears-link/mac", hashlib.sha256).digest(),
            enc=hmac.new(raw, b"arrears-link/enc", hashlib.sha256).digest(),
        )


def _ctr(key: bytes, tag: bytes, data: bytes) -> bytes:
    iv = tag + b"\x00" * (16 - len(tag))  # 96-bit nonce + 32-bit block counter
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


# -- compact claims ------------------------------------------------------------------------------------------
def _put_str(out: bytearray, value: str) -> None:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("link claim longer than 255 bytes")
    out.append(len(raw))
    out += raw


def _put_uvarint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError("negative number in a link claim")
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LinkInvalid("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def str(self) -> str:
        try:
            return self.take(self.take(1)[0]).decode()
        except UnicodeDecodeError:
            raise LinkInvalid("bad text") from None

    def uvarint(self) -> int:
        n = shift = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 35:
                raise LinkInvalid("bad number")


def pack(claims: LinkClaims) -> bytes:
    """issued (u32 s) | lifetime (u16 h) | tier | channel | account | notice (structured or verbatim)."""
    out = bytearray()
    issued = int(claims.issued_at.timestamp())
    hours = -(-int((claims.expires_at - claims.issued_at).total_seconds()) // 3600)
    if not 0 < hours <= 0xFFFF:
        raise ValueError("a link lives between one hour and 7 years")
    out += struct.pack(">IH", issued, hours)
    out.append(_TIERS.index(claims.tier))
    _put_str(out, claims.channel)
    _put_str(out, claims.account_id)
    prefix, suffix = f"{claims.account_id}:", f":{claims.channel}"
    inner = claims.notice_id.removeprefix(prefix).removesuffix(suffix)
    m = _SEGMENTER_ID.match(inner) if claims.notice_id == f"{prefix}{inner}{suffix}" else None
    if m and f"{m['policy']}:v{int(m['v'])}:s{int(m['s'])}:c{int(m['c'])}" == inner:
        out.append(1)
        _put_str(out, m["policy"])
        for n in (m["v"], m["s"], m["c"]):
            _put_uvarint(out, int(n))
    else:
        out.append(0)
        _put_str(out, claims.notice_id)
    return bytes(out)


def unpack(data: bytes) -> LinkClaims:
    r = _Reader(data)
    issued, hours = struct.unpack(">IH", r.take(6))
    tier_ix = r.take(1)[0]
    if tier_ix >= len(_TIERS):
        raise LinkInvalid("bad tier")
    channel, account = r.str(), r.str()
    kind = r.take(1)[0]
    if kind == 1:
        policy = r.str()
        v, s, c = r.uvarint(), r.uvarint(), r.uvarint()
        notice_id = f"{account}:{policy}:v{v}:s{s}:c{c}:{channel}"
    elif kind == 0:
        notice_id = r.str()
    else:
        raise LinkInvalid("bad notice kind")
    if r.pos != len(data):
        raise LinkInvalid("trailing bytes")
    issued_at = datetime.fromtimestamp(issued, UTC)
    return LinkClaims(
        notice_id, account, channel, _TIERS[tier_ix], issued_at, issued_at + timedelta(hours=hours)
    )


# -- signing -------------------------------------------------------------------------------------------------
class LinkSigner:
    """Mints with the current key, verifies with the current and every previous key."""

    def __init__(self, key: str, previous: tuple[str, ...] = ()) -> None:
        self._keys = [_Key.derive(key), *(_Key.derive(k) for k in previous)]

    @classmethod
    def from_settings(cls, s: LinkSettings) -> LinkSigner | None:
        """None when no link key is configured (notices then go out without a link)."""
        if s.link_key is None:
            return None
        previous: tuple[str, ...] = ()
        if s.link_previous_keys is not None:
            previous = tuple(
                k.strip() for k in s.link_previous_keys.get_secret_value().split(",") if k.strip()
            )
        return cls(s.link_key.get_secret_value(), previous)

    def mint(self, claims: LinkClaims) -> str:
        key = self._keys[0]
        body = pack(claims)
        tag = hmac.new(key.mac, bytes([VERSION]) + body, hashlib.sha256).digest()[:TAG_BYTES]
        return _b64(bytes([VERSION]) + tag + _ctr(key.enc, tag, body))

    def verify(self, token: str, now: datetime | None = None) -> LinkClaims:
        """The claims of an authentic, unexpired token. Raises `LinkInvalid` or `LinkExpired`."""
        if not _TOKEN.match(token):
            raise LinkInvalid("malformed")
        try:
            raw = _unb64(token)
        except (binascii.Error, ValueError):
            raise LinkInvalid("malformed") from None
        if len(raw) < 1 + TAG_BYTES + 8 or raw[0] != VERSION:
            raise LinkInvalid("malformed")
        tag, sealed = raw[1 : 1 + TAG_BYTES], raw[1 + TAG_BYTES :]
        for key in self._keys:
            body = _ctr(key.enc, tag, sealed)
            want = hmac.new(key.mac, bytes([VERSION]) + body, hashlib.sha256).digest()[:TAG_BYTES]
            if hmac.compare_digest(want, tag):
                claims = unpack(body)
                if claims.expired(now or datetime.now(UTC)):
                    raise LinkExpired(claims)
                return claims
        raise LinkInvalid("signature")


def link_for_notice(
    signer: LinkSigner,
    base_url: str,
    *,
    notice_id: str,
    account_id: str,
    channel: str,
    tier: Tier | None,
    issued_at: datetime,
    ttl: timedelta,
) -> str:
    """The personal link a notice carries. `issued_at` should be stable for a notice (its due time), so the
    same notice rendered twice gets the same link."""
    issued = issued_at.astimezone(UTC).replace(microsecond=0)
    claims = LinkClaims(notice_id, account_id, channel, tier, issued, issued + ttl)
    return base_url + signer.mint(claims)


@functools.cache
def _configured() -> tuple[LinkSigner | None, str, timedelta]:
    s = LinkSettings()
    return LinkSigner.from_settings(s), s.link_public_url, timedelta(days=s.link_ttl_days)


def reset_configuration() -> None:
    """Forget the settings read from the environment (tests that change `ARREARS_LINK_*`)."""
    _configured.cache_clear()


def notice_link(notice: NoticeDue) -> str:
    """The personal link a collection notice (dunning step or payment retry) carries, "" for other notices
    (answers, confirmations) and when no `ARREARS_LINK_KEY` is configured. Issued at the notice's due time, so
    rendering the same notice again (after a crash, for the in-doubt check) gives the same link."""
    signer, base_url, ttl = _configured()
    if signer is None or not notice.is_collection:
        return ""
    return link_for_notice(
        signer,
        base_url,
        notice_id=notice.notice_id,
        account_id=notice.account_id,
        channel=notice.channel,
        tier=notice.tier,
        issued_at=notice.due_at,
        ttl=ttl,
    )
