"""The resolved configuration: one frozen dataclass per stage plus the root.

Defaults live only in the dataclasses. A TOML file and ``--set section.key=value`` overrides are
merged on top, in that order, and every value is type-checked on load::

    cfg = load_config(Path("configs/demo.toml"), ["walk.top_k=30"])
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linksage.config._load import ConfigError, build, merge, parse_override, read_toml, set_path, to_dict
from linksage.config.content import ContentConfig
from linksage.config.crawl import CrawlConfig
from linksage.config.evaluate import EvaluateConfig
from linksage.config.graph import GraphConfig
from linksage.config.ingest import IngestConfig, RedditSource, SyntheticSource, TablesSource
from linksage.config.serve import ServeConfig
from linksage.config.store import EmbedConfig, IndexConfig, StoreConfig
from linksage.config.train import TrainConfig
from linksage.config.update import UpdateConfig
from linksage.config.walk import WalkConfig


@dataclass(frozen=True)
class Config:
    """Root config; each stage reads its own section."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)

    def section(self, name: str) -> Any:
        """The config object of one section, by name (``"walk"`` -> ``WalkConfig``)."""
        if name not in {f for f in self.__dataclass_fields__}:
            raise ConfigError(f"unknown config section {name!r}")
        return getattr(self, name)


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the TOML file, then ``--set`` overrides; checked on construction.

    Relative paths inside the file are kept as written (they are resolved against the working
    directory, as on the command line).
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    for text in overrides:
        keys, value = parse_override(text)
        data = set_path(data, keys, value)
    return build(Config, data)


def config_to_dict(cfg: Any) -> Any:
    return to_dict(cfg)


def config_to_toml(cfg: Config) -> str:
    """Render the resolved config as TOML (round-trips through ``load_config``)."""
    import tomli_w

    text = tomli_w.dumps(to_dict(cfg))
    tomllib.loads(text)  # guard: never print something we could not read back
    return text


def fingerprint(obj: Any) -> str:
    """A stable hash of a config section (or any JSON-able value); ``added_later`` fields at their default
    are left out, so that adding one does not make earlier runs stale."""
    blob = json.dumps(to_dict(obj, fingerprint=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


__all__ = [
    "Config",
    "ConfigError",
    "ContentConfig",
    "CrawlConfig",
    "EmbedConfig",
    "EvaluateConfig",
    "GraphConfig",
    "IndexConfig",
    "IngestConfig",
    "RedditSource",
    "ServeConfig",
    "StoreConfig",
    "SyntheticSource",
    "TablesSource",
    "TrainConfig",
    "UpdateConfig",
    "WalkConfig",
    "config_to_dict",
    "config_to_toml",
    "fingerprint",
    "load_config",
    "merge",
]
