"""The SMTP relay fallback route (Gmail API -> SMTP, ARCHITECTURE §4) over aiosmtplib.

Classified like the API clients: connection refused / 4xx replies -> `ProviderTransientError` (nothing
was accepted), 421/451/452 "try again later" included; 5xx replies to a recipient -> `ProviderPermanentError`;
a failure after the end of DATA was sent (timeout, dropped connection) -> `ProviderInDoubt`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email import message_from_bytes, policy

import aiosmtplib
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderTransientError,
)

PROVIDER = "smtp"


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    implicit_tls: bool = False
    timeout_s: float = 15.0
    tls_context: ssl.SSLContext | None = None

    async def send_raw(self, raw: bytes, sender: str, recipients: list[str]) -> str:
        """Relay one RFC 5322 message; returns the relay's reply text (queue id)."""
        message = message_from_bytes(raw, policy=policy.SMTP)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout_s,
            use_tls=self.implicit_tls,
            start_tls=self.starttls if not self.implicit_tls else False,
            tls_context=self.tls_context,
            username=self.username,
            password=self.password,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as e:
            raise ProviderAuthError(f"SMTP AUTH rejected: {e}", provider=PROVIDER, status=e.code) from e
        except (aiosmtplib.SMTPException, OSError) as e:
            raise ProviderTransientError(f"cannot reach SMTP relay: {e!r}", provider=PROVIDER) from e
        try:
            errors, reply = await client.send_message(message, sender=sender, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as e:
            codes = [r.code for r in e.recipients]
            if all(500 <= c < 600 for c in codes):
                raise ProviderPermanentError(
                    f"SMTP relay refused the recipient: {e.recipients[0].message}",
                    provider=PROVIDER,
                    status=codes[0],
                ) from e
            raise ProviderTransientError(f"SMTP recipient deferred: {e}", provider=PROVIDER) from e
        except aiosmtplib.SMTPResponseException as e:
            if 500 <= e.code < 600 and e.code not in (552,):
                raise ProviderPermanentError(
                    f"SMTP {e.code}: {e.message}", provider=PROVIDER, status=e.code
                ) from e
            raise ProviderTransientError(
                f"SMTP {e.code}: {e.message}", provider=PROVIDER, status=e.code
            ) from e
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as e:
            # The message may have been accepted after DATA: reconcile, never blindly resend.
            raise ProviderInDoubt(f"SMTP send outcome unknown: {e!r}", provider=PROVIDER) from e
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        if errors:
            raise ProviderPermanentError(f"SMTP relay refused: {errors}", provider=PROVIDER)
        return reply
