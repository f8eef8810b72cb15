"""Secrets and endpoints from the environment, read once at start and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    folder = Path(state_home) / "amlbot"
    return f"sqlite:///{folder / 'amlbot.sqlite3'}"


# The names Python's logging knows; anything else would end `logging.basicConfig` in a traceback.
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
WorkPriority = Literal["idle", "low"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, validation_alias="SLACK_API_URL")
    database_url: str = Field(
        default_factory=default_database_url,
        validation_alias=AliasChoices("AMLBOT_DATABASE_URL", "database_url"),
    )
    config_path: str | None = Field(
        default=None, validation_alias=AliasChoices("AMLBOT_CONFIG", "config_path")
    )
    # Shared secret Azure Event Grid deliveries to POST /azure/events must carry.
    eventgrid_secret: SecretStr | None = Field(
        default=None, validation_alias="AMLBOT_EVENTGRID_SECRET"
    )
    log_level: LogLevel = Field(default="INFO", validation_alias="AMLBOT_LOG_LEVEL")
    # None: JSON lines for `serve` and `work`, text for the commands run by hand.
    log_format: Literal["json", "text"] | None = Field(
        default=None, validation_alias="AMLBOT_LOG_FORMAT"
    )
    # `amlbot work` processes that `amlbot serve` starts on PostgreSQL (on SQLite its one
    # worker runs in-process); None: one per CPU the process may use, 1 to 4; 0: the edge
    # alone (workers deployed separately). Each takes about 100 MB, 200 MB once it has
    # talked to Azure, so a container with a memory limit should set it.
    work_processes: int | None = Field(
        default=None, ge=0, le=32, validation_alias="AMLBOT_WORK_PROCESSES"
    )
    # How `serve`'s `amlbot work` children share the machine's CPUs with its edge: "idle",
    # only what the edge and everything else leave free (acks first, always); "low", nice
    # 10, a small share even while other work keeps every CPU busy. `amlbot work` started
    # by itself keeps the priority it was given.
    work_priority: WorkPriority = Field(default="idle", validation_alias="AMLBOT_WORK_PRIORITY")

    # HTTP mode: after SIGTERM, seconds `serve` keeps taking requests with `/readyz` at 503,
    # while the load balancer stops sending (Kubernetes takes a pod out of its Service's
    # endpoints a few seconds after it is told to stop); then it finishes what is in flight.
    # SIGINT or a second SIGTERM stops at once. With workers in the same pod, drain plus
    # their 20 s grace must fit `terminationGracePeriodSeconds` (30 by default).
    drain_seconds: float = Field(default=5.0, ge=0, le=60, validation_alias="AMLBOT_DRAIN_SECONDS")

    # Seconds each change in a simulated (local) workspace takes, as an Azure call would.
    simulated_latency: float = Field(
        default=0.0, ge=0, le=60, validation_alias="AMLBOT_SIMULATED_LATENCY_SECONDS"
    )

    # The Azure Retail Prices API the daily price refresh reads; "off": no refresh (the
    # cached prices and the shipped snapshot are used).
    retail_prices_url: str = Field(
        default="https://prices.azure.com/api/retail/prices",
        validation_alias="AMLBOT_RETAIL_PRICES_URL",
    )

    # A price snapshot to use instead of the shipped one (one `amlbot prices refresh
    # --snapshot FILE` wrote, e.g. for the regions of an offline deployment).
    price_snapshot: str | None = Field(default=None, validation_alias="AMLBOT_PRICE_SNAPSHOT")

    @property
    def prices_url(self) -> str | None:
        return None if self.retail_prices_url.strip().lower() == "off" else self.retail_prices_url

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "work_priority", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def ensure_database_folder(self) -> None:
        if self.database_url.startswith("sqlite:///"):
            path = Path(self.database_url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
