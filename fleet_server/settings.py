"""The fleet server's configuration: one pydantic-settings class.

Read once at start-up (by the CLI) from the environment, prefix `UMMC_`
(e.g. `UMMC_DATABASE_URL`, `UMMC_MQTT_PORT`), then passed down explicitly:
no other module reads the environment. Outside development the class refuses
to load with a default secret or password.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# The placeholder shipped as the default secret and bootstrap password: fine on
# a developer's machine, refused in production.
DEFAULT_SECRET = "changethis"
MIN_SECRET_KEY_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UMMC_", extra="ignore",
                                      validate_default=True)

    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"

    # SQLite file (relative to the working directory) by default; PostgreSQL at
    # scale, e.g. postgresql+psycopg://user:pw@host/db (postgresql:// works too).
    database_url: str = "sqlite:///var/fleet.db"

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = "ummc-fleet-ingest"
    mqtt_keepalive: int = Field(default=60, ge=5)
    # "5" (Mosquitto): shared subscriptions, several workers. "3.1.1" for a
    # broker without MQTT 5, e.g. the demo's embedded amqtt fallback: plain
    # subscriptions, so run ONE ingest worker.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    # MQTT 5 session expiry (s): how long the broker keeps a stopped worker's
    # session (clean_start=False) and queues its messages. Mosquitto keeps
    # giving an offline member of a shared group its turn of the messages, so
    # a worker that never returns delays 1/N of them until this expires (the
    # gateways re-send meanwhile): keep it to a restart's length.
    mqtt_session_expiry: int = Field(default=3600, ge=0)
    # Shared-subscription group: workers of one group split the messages.
    ingest_group: str = Field(default="ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    # Keys the HMAC under which API tokens are stored.
    secret_key: str = DEFAULT_SECRET
    access_token_expire_minutes: int = Field(default=24 * 60, ge=1)

    # Created (if missing) by `run` and `api`; None disables the bootstrap.
    bootstrap_admin_username: str = "admin"
    bootstrap_admin_password: str | None = DEFAULT_SECRET

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        problems: list[str] = []
        if self.secret_key == DEFAULT_SECRET:
            problems.append("UMMC_SECRET_KEY is the default")
        elif len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            problems.append(f"UMMC_SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters")
        if self.bootstrap_admin_password == DEFAULT_SECRET:
            problems.append("UMMC_BOOTSTRAP_ADMIN_PASSWORD is the default "
                            "(set a real one, or unset the bootstrap with an empty value)")
        if not problems:
            return self
        if self.env == "production":
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        log.warning("development settings: %s", "; ".join(problems))
        return self

    @model_validator(mode="before")
    @classmethod
    def _empty_means_none(cls, data: object) -> object:
        # UMMC_BOOTSTRAP_ADMIN_PASSWORD= (empty) disables the bootstrap admin.
        if isinstance(data, dict):
            for key in ("bootstrap_admin_password", "mqtt_username", "mqtt_password"):
                if data.get(key) == "":
                    data[key] = None
        return data
