"""Configuration from environment variables, all prefixed `ARREARS_`.

Every service subclasses `ServiceSettings` and adds its own fields; the field name upper-cased with the
prefix is the variable name (`kafka_bootstrap_servers` -> `ARREARS_KAFKA_BOOTSTRAP_SERVERS`).
Secrets are `SecretStr`, so they never appear in reprs or logs.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import Field, SecretStr
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


class ServiceSettings(KafkaSettings, DatabaseSettings, RunnerSettings):
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
