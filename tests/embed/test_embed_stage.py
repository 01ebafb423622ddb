"""The embed stage through the pipeline runner: manifest, summary, indices, skip and force."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from embed_world import write_run

from linksage import pipeline
from linksage.config import Config
from linksage.config._load import build
from linksage.config.store import EmbedConfig, StoreConfig
from linksage.embed.stage import run_state
from linksage.store.lance_store import EmbeddingStore


@dataclass(frozen=True)
class EmbedTestConfig(Config):
    """The root config with the sections this stage reads (in case the root does not carry them yet)."""

    embed: EmbedConfig = field(default_factory=EmbedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


EMBED = pipeline.Stage("embed", "linksage.embed.stage:run", sections=("embed", "store"))


def config(**embed: object) -> Config:
    return build(EmbedTestConfig, {"embed": {"device": "cpu", "chunk_rows": 100, **embed}})


def test_stage_writes_the_store_indices_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "STAGES", (EMBED,))
    run = write_run(tmp_path / "run")
    manifest = pipeline.run_stages(config(), run, ["embed"])["embed"]
    counts = {"pages": 300, "embedded": 300, "unchanged": 0, "inserted": 300, "updated": 0, "checked": 300}
    assert manifest["counts"] == counts  # a full run compares every page with the store
    assert manifest["metrics"]["store_version"] == 2 and manifest["metrics"]["day"] == "2013-04-30"
    assert manifest["metrics"]["run_state"] == run_state(run)  # the run's state the store now holds
    assert manifest["metrics"]["pages_per_s"] > 0
    assert {"load_s", "fingerprint_s", "embed_write_s", "index_s"} <= set(manifest["timings"])
    summary = json.loads((run / "embed" / "embed.json").read_text())
    assert summary["store"] == str(run / "store") and summary["version"] == 2
    assert EmbeddingStore.open(run / "store").count() == 300
    ann = sorted(p.name.split("-")[0] for p in (run / "store" / "ann").iterdir())
    assert ann == ["pages", "pins"]

    pipeline.run_stages(config(), run, ["embed"])  # fresh: skipped
    forced = pipeline.run_stages(config(), run, ["embed"], force=True)["embed"]
    assert forced["counts"]["embedded"] == 0 and forced["metrics"]["committed"] is False
    assert EmbeddingStore.open(run / "store").version == 2


def test_store_path_and_day_come_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "STAGES", (EMBED,))
    run = write_run(tmp_path / "run", n_pages=50, n_pins=60)
    cfg = build(
        EmbedTestConfig,
        {
            "embed": {"device": "cpu", "day": "2013-06-01"},
            "store": {"path": str(tmp_path / "elsewhere"), "build_index": False},
        },
    )
    manifest = pipeline.run_stages(cfg, run, ["embed"])["embed"]
    assert manifest["metrics"]["day"] == "2013-06-01"
    assert EmbeddingStore.open(tmp_path / "elsewhere").history()[-1].days == ("2013-06-01",)
    assert not (tmp_path / "elsewhere" / "ann").exists() and not (run / "store").exists()


def test_missing_upstream_stage_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "STAGES", (EMBED,))
    run = write_run(tmp_path / "run", n_pages=20, n_pins=20)
    (run / "walk" / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="stage 'walk' has not completed"):
        pipeline.run_stages(config(), run, ["embed"])


def test_embed_config_validation() -> None:
    from linksage.config import ConfigError

    with pytest.raises(ConfigError, match=r"embed.day: expected an ISO date like 2013-04-01, got 'yesterday'"):
        EmbedConfig(day="yesterday")
    with pytest.raises(ConfigError, match=r"embed.chunk_rows: must be positive, got 0"):
        EmbedConfig(chunk_rows=0)
    with pytest.raises(ConfigError, match=r"embed.device: expected auto, cpu, cuda or cuda:N, got 'tpu'"):
        EmbedConfig(device="tpu")
    with pytest.raises(ConfigError, match=r"store.index.kind: 'annoy' is not one of"):
        build(EmbedTestConfig, {"store": {"index": {"kind": "annoy"}}})
