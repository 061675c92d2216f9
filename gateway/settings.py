"""Typed settings, read once from ``VITALGATE_*`` environment variables (never at import)."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .gc_policy import parse_thresholds

log = logging.getLogger(__name__)

DEFAULT_DB = "sqlite+aiosqlite:///./var/vitalgate.db"


def normalise_db_url(url: str) -> str:
    """Force the async driver for each backend: ``sqlite+aiosqlite`` / ``postgresql+asyncpg``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite or postgresql")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VITALGATE_", extra="ignore")

    database_url: str = DEFAULT_DB
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_max_frame: int = 1 << 20
    mllp_idle_timeout: float = 300.0
    mllp_accepted_processing_ids: str = "P"
    # MLLP over TLS: certificate chain and key (PEM); with mllp_tls_ca, senders must present
    # a client certificate signed by that CA
    mllp_tls_cert: str | None = None
    mllp_tls_key: str | None = None
    mllp_tls_ca: str | None = None
    mllp_allow_peers: str = ""  # IPs / CIDRs, comma separated; empty = any peer
    mllp_allow_senders: str = ""  # APP, APP/FACILITY or */FACILITY (MSH-3/MSH-4); empty = any
    site_tz: str = "UTC"
    auth_required: bool = True
    cloud_url: str | None = None
    log_level: str = "INFO"
    base_url: str | None = None
    group_commit_ms: float = 1.0
    # SQLite on a file: the writer's connection in a child process, on the other core than the
    # event loop's (fhir_server/storage/writer_process.py). On by default since the eleventh round
    # (docs/mllp-ingest-performance.md): at 5,000 Obs/s offered the full node's alert p99 is
    # 132 against 435 ms with the writer in a thread, and at 1,000 the two are within 1 ms
    writer_process: bool = True
    devices: str = ""  # device feeds to poll: kind@host:port[#bed], comma separated (gateway.devices.service)
    # alerting (gateway.alerting): rule set name or TOML path; signed-model registry; trusted keys
    alert_ruleset: str = "news2-ward"
    alert_unit_rulesets: str = "ICU=icu-limits"  # per care unit: "ICU=icu-limits,CCU=icu-limits" (PV1-3.1)
    model_dir: Path = Path("./var/models")
    trusted_keys_dir: Path | None = None  # None: the keys shipped in models/trusted_keys
    # cyclic collector, applied once the node is up (gateway.gc_policy): freeze the start-up heap,
    # then these gc.set_threshold values, "gen0,gen1,gen2"; a full collection after 1,000 young
    # ones instead of Python's 10 (measured: docs/subscriptions.md, "Fourth round")
    gc_freeze: bool = True
    gc_thresholds: Annotated[tuple[int, int, int], NoDecode] = (700, 10, 1000)

    @field_validator("database_url")
    @classmethod
    def _driver(cls, v: str) -> str:
        return normalise_db_url(v)

    @field_validator("gc_thresholds", mode="before")
    @classmethod
    def _gc_thresholds(cls, v: object) -> tuple[int, int, int]:
        return parse_thresholds(v)

    @model_validator(mode="after")
    def _warn(self) -> Settings:
        if not self.auth_required:
            log.warning("VITALGATE_AUTH_REQUIRED=false: development mode, no authorization")
        return self

    @property
    def sqlite_path(self) -> Path | None:
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[1]
        return None if path in ("", ":memory:") else Path(path)

    @property
    def fhir_base(self) -> str:
        base = self.base_url or f"http://{self.http_host}:{self.http_port}"
        return base.rstrip("/") + "/fhir"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
