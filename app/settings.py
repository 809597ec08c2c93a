"""The one settings class: environment variables with the ``LOOKBOOK_`` prefix (and ``REDIS_URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth import ApiKey, KeyRing, read_keys_file
from feature_store.timeutils import SECONDS_PER_DAY
from models.bandit import BanditConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOKBOOK_", extra="ignore", env_nested_delimiter="__"
    )

    env: Literal["development", "test", "production"] = "development"
    bundle_dir: Path = Path("var/bundles")
    data_dir: Path = Path("var/data")
    event_log_dir: Path = Path("var/events")
    database_url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL event store (postgresql://…): events, consent and erasures shared "
        "by every replica (docs/event-store.md); unset: the file log in event_log_dir",
    )
    database_pool_size: int = Field(4, ge=1, le=100, description="event store connections")
    database_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="longest wait for an event store connection (then 503)"
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "LOOKBOOK_REDIS_URL")
    )
    redis_prefix: str = "lb:"
    cache_ttl_seconds: float = Field(300.0, ge=0)
    cache_max_customers: int = Field(100_000, ge=1)
    online_max_customers: int = Field(
        100_000,
        ge=1,
        description="customers whose recent events, purchases and profile state the in-process "
        "online store keeps (no Redis); the least recently used are dropped first",
    )
    default_k: int = Field(12, ge=1, le=100)
    max_k: int = Field(100, ge=1, le=1000)
    bundle_poll_seconds: float = Field(
        30.0, ge=0, description="how often to look for a newer bundle; 0 disables hot reload"
    )
    bundle_probe_budget_seconds: float = Field(
        10.0,
        gt=0,
        description="time a new bundle's probe feeds (personalized, similar, complete the look) "
        "may take before it is served; slower, it is rejected",
    )
    max_batch_events: int = Field(1000, ge=1)
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request body; a larger one is refused (413)"
    )
    max_events_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="largest body of POST /v1/events (a batch of up to max_batch_events events)",
    )
    worker_threads: int = Field(
        4, ge=1, le=256, description="threads running request handlers (they are CPU-bound)"
    )
    recent_events_per_customer: int = Field(100, ge=1)
    default_diversity: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="diversity of a list when the request gives none (0: none … 1: strong)",
    )
    strategies_file: Path | None = Field(
        None, description="JSON of segment strategies per surface (app/strategies.py defaults)"
    )
    experiments_file: Path | None = Field(
        None,
        description="A/B experiments, JSON or YAML (.yaml/.yml); format in docs/experiments.md",
    )
    served_list_ttl_seconds: float = Field(
        2 * SECONDS_PER_DAY,
        gt=0,
        description="how long a served-list record stays in the online store (events echoing "
        "its recommendation_id later than this are accepted but not attributed)",
    )
    served_list_max_records: int = Field(
        100_000, ge=1, description="records and touches kept by the in-process store (no Redis)"
    )
    attribution_window_days: float = Field(
        7.0,
        gt=0,
        le=90,
        description="a purchase within this many days after an attributed click or add-to-cart "
        "of the same item by the same customer is credited to it",
    )
    impression_log_dir: Path | None = Field(
        None, description="durable served-list records (default: <event_log_dir>/impressions)"
    )
    compaction_seconds: float = Field(
        3600.0,
        ge=0,
        description="how often erased customers' events and served-list records are removed from "
        "the event and impression logs on disk (each process rewrites its own slot of the file "
        "log and any slot no live process holds); 0 disables it",
    )
    impression_log_flush_seconds: float = Field(
        1.0, gt=0, le=60, description="how often the impression log is written (and fsynced)"
    )
    bandit: BanditConfig = Field(
        default_factory=BanditConfig,
        description="the Thompson-sampling reranker (models/bandit.py; off by default): "
        "LOOKBOOK_BANDIT__ENABLED, LOOKBOOK_BANDIT__EXPLORATION, "
        "LOOKBOOK_BANDIT__EXPLORATION_BY_SURFACE='{\"email\": 0.2}', … or LOOKBOOK_BANDIT as JSON",
    )
    bandit_seed: int | None = Field(
        None,
        description="seed of the bandit's random draws, per request from its context (tests, "
        "simulations); unset in production: fresh entropy per request",
    )

    api_keys_file: Path | None = Field(
        None,
        description="API keys, a YAML or JSON list of {name, sha256, scopes} (app/auth.py; "
        "`lookbook keys new` makes one); with LOOKBOOK_API_KEYS too, both count",
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list, description="API keys as inline JSON, same format as the file"
    )
    metrics_require_key: bool = Field(
        False, description="GET /metrics needs a key with the admin scope (open by default)"
    )
    _keyring: KeyRing = PrivateAttr(default_factory=KeyRing)

    @property
    def keyring(self) -> KeyRing:
        """Every configured API key (file and inline); empty: the service is open."""
        return self._keyring

    @property
    def impressions_dir(self) -> Path:
        """Where the impression log is written."""
        if self.impression_log_dir is not None:
            return self.impression_log_dir
        return self.event_log_dir / "impressions"

    @model_validator(mode="after")
    def _load_api_keys(self) -> Settings:
        from_file = read_keys_file(self.api_keys_file) if self.api_keys_file else []
        self._keyring = KeyRing([*self.api_keys, *from_file])
        if self.env == "production" and self._keyring.open:
            raise ValueError(
                "LOOKBOOK_ENV=production needs API keys: set LOOKBOOK_API_KEYS_FILE (a YAML or "
                "JSON list of {name, sha256, scopes}) or LOOKBOOK_API_KEYS; "
                "`lookbook keys new --name NAME --scopes read` makes one"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_redis(self) -> Settings:
        if self.env == "production" and not self.redis_url:
            raise ValueError(
                "LOOKBOOK_ENV=production needs REDIS_URL: replicas must share the online store"
            )
        return self
