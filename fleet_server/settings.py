"""The fleet server's configuration: one pydantic-settings class.

Read once at start-up (by the CLI) from the environment, prefix `UMMC_`
(e.g. `UMMC_DATABASE_URL`, `UMMC_MQTT_PORT`), then passed down explicitly:
no other module reads the environment. Outside development the class refuses
to load with a default secret or password.
"""

from __future__ import annotations

import logging
from pathlib import Path
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
    mqtt_session_expiry: int = Field(default=120, ge=0)
    # Shared-subscription group: workers of one group split the messages.
    ingest_group: str = Field(default="ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    # Time-series copy of readings and gateway health (fleet_server/timeseries.py,
    # docs/operations.md "Time series (InfluxDB)"); no URL: no copy. The SQL
    # store stays the source of truth: this copy never blocks ingest.
    influx_url: str | None = None  # http(s)://host:8086
    influx_token: str | None = None  # InfluxDB 1.8: "user:password"
    influx_org: str = "ummc"  # InfluxDB 1.8: "-"
    influx_bucket: str = "ummc"  # InfluxDB 1.8: "database/retention_policy"
    influx_batch_size: int = Field(default=1000, ge=1, le=50_000)
    influx_flush_interval_ms: int = Field(default=1000, ge=10)
    influx_max_queue: int = Field(default=100_000, ge=1)
    influx_timeout_ms: int = Field(default=10_000, ge=100)
    influx_retry_interval_ms: int = Field(default=1000, ge=10)
    influx_max_retry_delay_ms: int = Field(default=30_000, ge=10)
    influx_gzip: bool = True

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    # Keys the HMAC under which API tokens are stored.
    secret_key: str = DEFAULT_SECRET
    access_token_expire_minutes: int = Field(default=24 * 60, ge=1)

    # Created (if missing) by `run` and `api`; None disables the bootstrap.
    bootstrap_admin_username: str = "admin"
    bootstrap_admin_password: str | None = DEFAULT_SECRET

    # --- device-health model and alerts (docs/operations.md) ---
    # A gateway's heartbeat period; no message for `heartbeat_missed` periods
    # (while the ingest worker has been listening that long) makes it "stale".
    heartbeat_interval_s: int = Field(default=60, ge=5)
    heartbeat_missed: int = Field(default=3, ge=2)
    # Offline spells shorter than this (a broker or gateway restart) are not
    # downtime and open no alert.
    offline_grace_s: int = Field(default=180, ge=0)
    # How often `run`/`ingest` evaluate alerts (0: never).
    evaluate_interval_s: float = Field(default=60.0, ge=0)
    # One heartbeat per gateway kept per this period as a time series point,
    # for this many days.
    health_sample_interval_s: int = Field(default=600, ge=1)
    health_retention_days: int = Field(default=60, ge=1)
    # The default planned working week of a unit (per-unit schedules and days
    # off in the database): Mon..Sun as 1/0, local hours, the time zone.
    schedule_weekdays: str = Field(default="1111100", pattern=r"^[01]{7}$")
    schedule_start: str = Field(default="08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    schedule_end: str = Field(default="17:00", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
    fleet_timezone: str = "Africa/Casablanca"
    # Alert thresholds.
    alert_offline_after_s: int = Field(default=1800, ge=0)  # of planned working time
    alert_backlog_age_s: int = Field(default=3600, ge=1)  # oldest unacked record
    alert_backlog_growth: int = Field(default=50, ge=1)  # records more than ...
    alert_backlog_window_s: int = Field(default=3600, ge=60)  # ... this long ago
    alert_battery_pct: int = Field(default=20, ge=0, le=100)
    alert_instrument_unseen_days: int = Field(default=7, ge=1)
    alert_clock_drift_ms: int = Field(default=120_000, ge=1)
    alert_calibration_within_days: int = Field(default=14, ge=0)
    alert_errors_count: int = Field(default=5, ge=1)  # instrument errors ...
    alert_errors_window_s: int = Field(default=86_400, ge=60)  # ... within this window

    # --- commands to gateways ---
    command_default_expires_s: int = Field(default=3600, ge=10, le=7 * 86_400)
    command_publish_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # --- metrics: a static bearer token for Prometheus (besides admin and
    # logistics users' tokens); None: users' tokens only.
    metrics_token: str | None = Field(default=None, min_length=16)

    # --- gateway credentials on the broker (fleet_server/broker_accounts.py,
    # docs/operations.md "Gateway credentials and the broker"). No password
    # file: POST /gateways/{id}/credentials answers 503.
    broker_password_file: Path | None = None  # Mosquitto's password_file
    broker_acl_file: Path | None = None  # Mosquitto's acl_file (rewritten whole)
    # How the broker is told to reload both (at most one): SIGHUP to the pid
    # in this file, or this command (split like a shell would, run without
    # one), e.g. `systemctl reload mosquitto`. Neither: the files change and
    # the broker applies them at its next reload or restart.
    broker_pid_file: Path | None = None
    broker_reload_command: str | None = None
    # Comma-separated broker users given read/write on the whole ummc/v1 tree
    # in the generated ACL: the fleet's service accounts (ingest workers).
    broker_service_users: str = Field(
        default="", pattern=r"^\s*([A-Za-z0-9_.@-]+\s*(,\s*[A-Za-z0-9_.@-]+\s*)*)?$")
    # Permissions of the written files: 0600, or 0640 when another user (the
    # broker) reads them through the group (the files keep their group).
    broker_file_mode: str = Field(default="0600", pattern=r"^0?[0-7][0-7]0$")
    # PBKDF2-SHA512 iterations of new password hashes (Mosquitto's `$7$`).
    broker_hash_iterations: int = Field(default=1000, ge=101, le=1_000_000)
    # Where gateways reach the broker, as the technician's tool takes it
    # (`mqtts://fleet.example.ma:8883`); None: mqtt://<mqtt_host>:<mqtt_port>.
    broker_public_url: str | None = Field(
        default=None, pattern=r"^mqtts?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")

    # --- firmware bundles and OTA rollouts (fleet_server/firmware_store.py,
    # docs/protocol.md "OTA"): where uploaded bundles are kept; the release
    # public keys an upload must be signed by (comma-separated: 64 hex digits
    # or .pub/.pem files; none: uploads answer 503); the base URL gateways
    # download from (None: http://<api_host>:<api_port>); how long a rollout's
    # download link lives.
    firmware_dir: Path = Path("var/firmware")
    firmware_trust: str = ""
    firmware_public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+/?$")
    firmware_link_expire_s: int = Field(default=7 * 86_400, ge=60, le=90 * 86_400)

    @property
    def broker_service_user_list(self) -> list[str]:
        return [u.strip() for u in self.broker_service_users.split(",") if u.strip()]

    @model_validator(mode="after")
    def _check_broker(self) -> Settings:
        if self.broker_pid_file is not None and self.broker_reload_command:
            raise ValueError("set UMMC_BROKER_PID_FILE or UMMC_BROKER_RELOAD_COMMAND, not both")
        if (self.broker_password_file is None) != (self.broker_acl_file is None):
            raise ValueError("UMMC_BROKER_PASSWORD_FILE and UMMC_BROKER_ACL_FILE go together")
        return self

    @model_validator(mode="after")
    def _check_schedule(self) -> Settings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.fleet_timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"UMMC_FLEET_TIMEZONE: unknown time zone "
                             f"{self.fleet_timezone!r}") from None
        if self.schedule_end <= self.schedule_start:
            raise ValueError("UMMC_SCHEDULE_END must be after UMMC_SCHEDULE_START")
        return self

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
            for key in ("bootstrap_admin_password", "mqtt_username", "mqtt_password",
                        "metrics_token", "broker_password_file", "broker_acl_file",
                        "broker_pid_file", "broker_reload_command", "broker_public_url",
                        "firmware_public_url"):
                if data.get(key) == "":
                    data[key] = None
        return data
