"""Configuration from environment variables, all prefixed `ARREARS_`.

Every service subclasses `ServiceSettings` and adds its own fields; the field name upper-cased with the
prefix is the variable name (`kafka_bootstrap_servers` -> `ARREARS_KAFKA_BOOTSTRAP_SERVERS`).
Secrets are `SecretStr`, so they never appear in reprs or logs.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ArrearsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARREARS_", extra="ignore", env_file=None)


class KafkaSettings(ArrearsSettings):
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="Protocol to the broker; SSL and SASL_SSL use TLS (system trust store or CA file)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        None,
        description="SASL mechanism (unset = no SASL). OAUTHBEARER needs a token provider, which is not wired yet",
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (PLAIN / SCRAM)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (PLAIN / SCRAM)")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for TLS to the broker")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    kafka_ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate")
    topic_partitions: int = Field(
        6,
        description="Partitions per topic when Arrears creates topics. Not read by the services yet: "
        "`arrears up` takes `--partitions`, Kubernetes topics come from deploy/gen_topics.py",
    )
    topic_replication_factor: int = Field(
        1,
        description="Replication factor for topics Arrears creates. Not read by the services yet (see above)",
    )

    @model_validator(mode="after")
    def _client_certificate_needs_tls(self) -> Self:
        """A CA bundle or client certificate is only used over TLS: refuse one that would be silently ignored
        (an operator who set the CA but forgot the protocol would otherwise talk to the broker in clear)."""
        if self.kafka_ssl_cafile and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                "ARREARS_KAFKA_SSL_CAFILE needs ARREARS_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, "
                f"not {self.kafka_security_protocol}"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("ARREARS_KAFKA_SSL_KEYFILE is set without ARREARS_KAFKA_SSL_CERTFILE")
        if self.kafka_ssl_certfile and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                "ARREARS_KAFKA_SSL_CERTFILE needs ARREARS_KAFKA_SECURITY_PROTOCOL=SSL (mutual TLS) or SASL_SSL, "
                f"not {self.kafka_security_protocol}"
            )
        return self

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client (producer, consumer, admin)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile:
                ctx.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            kw["ssl_context"] = ctx
        if self.kafka_sasl_mechanism:
            kw["sasl_mechanism"] = self.kafka_sasl_mechanism
            kw["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                kw["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kw


class DatabaseSettings(ArrearsSettings):
    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/arrears"),
        description="PostgreSQL URL (postgresql:// or postgresql+asyncpg://; ?host=/dir for a Unix socket)",
    )
    database_pool_size: int = Field(
        10, description="Connections kept per process (as many again may overflow under load)"
    )

    def async_database_url(self) -> str:
        return to_asyncpg_url(self.database_url.get_secret_value())


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("ARREARS_DATABASE_URL must start with postgresql://")


class RunnerSettings(ArrearsSettings):
    runner_max_batch: int = Field(2000, description="Max records per consumed batch (one DB transaction)")
    runner_poll_timeout_ms: int = Field(200, description="How long one consumer poll waits for records")
    runner_batch_linger_ms: int = Field(
        25, description="After the first records arrive, wait this long to fill a batch"
    )
    runner_max_poll_interval_ms: int = Field(
        300_000,
        description="Kafka max.poll.interval.ms: a batch taking longer makes the consumer leave its group",
    )
    runner_retry_attempts: int = Field(5, description="Attempts per record before it goes to the DLQ")
    runner_retry_base_s: float = Field(
        0.2,
        description="First retry delay of a failing record or an unreachable database (doubles each time)",
    )
    runner_retry_max_s: float = Field(10.0, description="Cap of that retry delay")
    runner_stuck_after_s: float = Field(
        120.0, description="Liveness fails when partitions are assigned, lag > 0 and nothing moved this long"
    )
    outbox_batch: int = Field(5000, description="Max outbox rows the relay publishes per round")
    outbox_poll_s: float = Field(
        0.05, description="Relay sleep when the outbox is drained (a commit in the same process wakes it)"
    )
    outbox_retention_s: float = Field(3600.0, description="Keep published outbox rows this long")
    inbox_retention_s: float = Field(
        30 * 86400.0, description="Remember processed ce_ids this long (must exceed the DLQ replay window)"
    )


class MoneySettings(ArrearsSettings):
    """Mixed into the settings of the services that compare or total money across currencies."""

    fx_rates_file: str | None = Field(
        None,
        description="JSON rates table: money thresholds are in minor units of its `reporting_currency`, "
        'amounts are converted with its dated rates ({"reporting_currency": "USD", "as_of": "2026-12-01", '
        '"rates": {"EUR": "1.16"}}); default: the packaged arrears_shared/data/fx_rates.json',
    )


class AuthSettings(ArrearsSettings):
    """Who may call a service's HTTP API (`ARREARS_AUTH_*`); see docs/security.md."""

    auth_oidc_issuer: str | None = Field(
        None,
        description="Issuer URL of the company's OpenID Connect provider (exactly the token's `iss`); "
        "unset = bearer tokens from an identity provider are not accepted, only API keys and console sessions",
    )
    auth_oidc_audience: str = Field(
        "arrears", description="Audience (`aud`) the provider puts in tokens meant for Arrears"
    )
    auth_oidc_jwks_url: str | None = Field(
        None, description="JWKS URL of the provider; unset = `jwks_uri` from the issuer's discovery document"
    )
    auth_oidc_roles_claim: str = Field(
        "roles",
        description="Claim holding the caller's roles; a dotted path for nested claims (realm_access.roles)",
    )
    auth_oidc_role_map: str = Field(
        "",
        description="Renames provider roles or groups to Arrears roles: `idp-name=role,...` "
        "(roles: viewer, collector, supervisor, admin, service); unset = the claim holds Arrears role names",
    )
    auth_oidc_name_claim: str = Field(
        "email",
        description="Claim recorded as the actor in the audit log (falls back to preferred_username, sub)",
    )
    auth_oidc_client_id: str | None = Field(
        None,
        description="The console's client id at the identity provider: enables 'Sign in with your company "
        "account' (authorization-code flow with PKCE); ID tokens must carry it as their audience",
    )
    auth_oidc_client_secret: SecretStr | None = Field(
        None, description="Client secret, if the provider registered the console as a confidential client"
    )
    auth_oidc_redirect_url: str | None = Field(
        None,
        description="The console's public callback URL registered at the provider "
        "(https://console.example.com/auth/callback); unset = derived from the request",
    )
    auth_oidc_leeway_s: float = Field(30.0, description="Clock skew allowed on exp / nbf / iat")
    auth_jwks_cache_s: float = Field(600.0, description="How long the provider's JWKS is cached")
    auth_failure_window_s: float = Field(
        60.0, description="Window over which failed authentications are counted per client address"
    )
    auth_failure_slowdown_after: int = Field(
        5, description="Failures in the window after which each further attempt of that client is delayed"
    )
    auth_failure_block_after: int = Field(
        30, description="Failures in the window after which that client gets 429 until the window passes"
    )
    auth_lockout_threshold: int = Field(
        6,
        ge=1,
        description="Failed sign-ins with one API key (a known key id, a wrong secret; API or console) inside "
        "`ARREARS_AUTH_LOCKOUT_WINDOW_S` that lock the key: every further sign-in with it fails, even with the "
        "right secret, until an admin unlocks it or the lock expires (default: more than 5 in 10 minutes)",
    )
    auth_lockout_window_s: float = Field(600.0, gt=0, description="Window of the sign-in lockout count")
    auth_lockout_duration_s: float = Field(
        1800.0,
        ge=0,
        description="How long a sign-in lock lasts; 0 = until an admin unlocks it (`arrears keys unlock`)",
    )
    auth_unusual_access_window_s: float = Field(
        600.0, gt=0, description="Sliding window over which the accounts each principal reads are counted"
    )
    auth_unusual_access_floor: int = Field(
        50,
        ge=1,
        description="Accounts read in the window above which the unusual-access alert may fire whatever the "
        "principal's baseline (the threshold is max(floor, factor x baseline))",
    )
    auth_unusual_access_factor: float = Field(
        5.0, gt=0, description="Multiple of the principal's usual accounts per window that is unusual"
    )
    auth_unusual_access_baseline_days: float = Field(
        7.0, gt=0, description="Trailing days over which a principal's usual accounts per window is averaged"
    )
    auth_access_flush_s: float = Field(
        30.0, gt=0, description="How often each replica writes its account-read counts to the iam schema"
    )
    auth_session_ttl_s: float = Field(8 * 3600.0, description="Lifetime of a console sign-in session")
    auth_cookie_secure: bool = Field(
        True,
        description="Mark the console session cookie Secure (HTTPS only); `arrears up` sets false for "
        "its plain-HTTP localhost console",
    )
    http_max_body_bytes: int = Field(
        1_048_576, description="Largest request body accepted by any route without its own limit (413 above)"
    )


class AuditSettings(ArrearsSettings):
    audit_hmac_key: SecretStr | None = Field(
        None,
        description="Key that seals the audit chain (HMAC-SHA256; at least 32 characters, e.g. "
        "`openssl rand -base64 48`). Required to write or verify audit entries; never stored in the database",
    )
    audit_hmac_previous_keys: SecretStr | None = Field(
        None, description="Retired audit keys (comma-separated) still needed to verify older entries"
    )
    audit_check_interval_s: float = Field(
        3600.0, description="How often each service verifies its audit chain (one replica at a time)"
    )


class VaultSettings(ArrearsSettings):
    vault_master_key: SecretStr | None = Field(
        None,
        description="Key-encryption key of the personal-data vault (base64 of 32 random bytes, e.g. "
        "`openssl rand -base64 32`): wraps each account's data key. Required wherever personal data is read "
        'or written; never stored in the database (docs/security.md, "Personal data")',
    )
    vault_previous_master_keys: SecretStr | None = Field(
        None,
        description="Retired master keys (comma-separated) still unwrapping data keys until "
        "`arrears vault rewrap` has moved them to the current one",
    )
    vault_index_key: SecretStr | None = Field(
        None,
        description="Key of the blind indexes (HMAC-SHA256 of normalised phone, email and name words) that "
        "keep exact lookups working on encrypted data; at least 32 characters. Changing it needs a re-index",
    )
    vault_key_cache_s: float = Field(
        5.0,
        description="How long a process keeps an account's unwrapped data key in memory. Bounds how long "
        "a running process may still read an account after `arrears erase` (stored data is unreadable at once)",
    )


class ServiceSettings(
    KafkaSettings, DatabaseSettings, RunnerSettings, AuthSettings, AuditSettings, VaultSettings
):
    """Settings every service has. Subclass per service for its own options."""

    service_name: str = Field(
        "arrears",
        description="Fixed by each service's entry point (logs, metrics, consumer group); the variable is ignored",
    )
    http_host: str = Field(
        "127.0.0.1", description="Address of the HTTP server (/healthz, /readyz, /metrics, the API)"
    )
    http_port: int = Field(8000, description="Port of the HTTP server")
    log_level: str = Field("INFO", description="Python log level: DEBUG, INFO, WARNING, ERROR")
    log_format: Literal["json", "text"] = Field(
        "json", description="json = one JSON object per line on stdout; text = human-readable lines"
    )
    shutdown_grace_s: float = Field(8.0, description="Time allowed to finish the batch in hand on SIGTERM")
    startup_retry_s: float = Field(
        2.0, description="Delay between attempts to reach the broker/database at start"
    )
