"""Config of ``linksage serve``: the HTTP API and browse page over a run directory's store (docs/serving.md)."""

from __future__ import annotations

from dataclasses import dataclass

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback by default: the API has no authentication
    port: int = 8000
    reload_interval_s: float = 2.0  # how often the store's newest version and the run's manifests are checked
    max_body_bytes: int = 1 << 20  # larger request bodies are refused with 413
    max_k: int = 1_000  # largest k of the top-k endpoints
    max_embed_pins: int = 10_000  # pins one POST /v1/pages/embed may name
    allow_store_writes: bool = True  # POST /v1/pages/embed may upsert into the store when it asks to
    access_log: bool = False  # uvicorn's per-request log lines (costly under load)
    fast_lookup: bool = True  # GET /v1/pages/embedding answered before FastAPI's routing (same answers)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65_535:
            raise ConfigError(f"serve.port: must be in [0, 65535], got {self.port}")
        if not self.host:
            raise ConfigError("serve.host: must not be empty, got ''")
        if not self.reload_interval_s > 0:
            raise ConfigError(f"serve.reload_interval_s: must be > 0, got {self.reload_interval_s}")
        for key in ("max_body_bytes", "max_k", "max_embed_pins"):
            if getattr(self, key) < 1:
                raise ConfigError(f"serve.{key}: must be >= 1, got {getattr(self, key)}")
