"""Twilio's request signature (``X-Twilio-Signature``), shared by the emulator (status callbacks it sends) and
the tests: base64(HMAC-SHA1(auth token, full URL + every POST parameter name and value, sorted by name)).
https://www.twilio.com/docs/usage/security#validating-requests"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
