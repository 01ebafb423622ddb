"""The ANN indices of a run directory's store: pages (by store version) and pins (by model), on disk.

Indices are derived data, kept beside the store and rebuilt whenever missing::

    <store>/ann/pages-v<version>-<build params hash>/   page embeddings of one store version, ids = page_id
    <store>/ann/pins-<model version>-<content key>-<build params hash>/
                                                      pins' targets in the model's space, ids = pin_idx

Search-time parameters (nprobe, rerank, ef) come from the current config, so changing them never
triggers a rebuild. Building a new index of a kind removes the older ones of that kind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from linksage import log
from linksage.config import fingerprint
from linksage.config._load import to_dict
from linksage.config.store import IndexConfig, StoreConfig
from linksage.search.ann import AnnIndex, SearchParams, choose_kind
from linksage.store.lance_store import EmbeddingStore

ANN_DIR = "ann"
_SEARCH_ONLY = ("nprobe", "rerank", "hnsw_ef_search")


def store_path(run_dir: Path | str, cfg: StoreConfig) -> Path:
    """``store.path``, or <run-dir>/store when empty."""
    return Path(cfg.path) if cfg.path else Path(run_dir) / "store"


def build_key(cfg: IndexConfig, n: int) -> str:
    """Hash of the parameters that change what is built (not the search-time ones)."""
    # to_dict(fingerprint=True), not dataclasses.asdict: a field marked added_later stays out at its default
    params = {k: v for k, v in to_dict(cfg, fingerprint=True).items() if k not in _SEARCH_ONLY}
    params["kind"] = choose_kind(cfg, n)
    return fingerprint(params)[:8]


def with_search_params(index: AnnIndex, cfg: IndexConfig) -> AnnIndex:
    p = index.params
    index.params = SearchParams(kind=p.kind, nprobe=cfg.nprobe, rerank=cfg.rerank, ef_search=cfg.hnsw_ef_search)
    return index


def pages_index(store: EmbeddingStore, cfg: IndexConfig) -> AnnIndex:
    """The index of the store's page embeddings at the store's version (built and saved when absent)."""
    n = store.count()
    folder = store.path / ANN_DIR / f"pages-v{store.version}-{build_key(cfg, n)}"
    if not (folder / "meta.json").exists():
        with log.Timer() as t:
            ids, vectors = store.embeddings()
            index = AnnIndex.build(vectors, ids, cfg)
            index.save(folder)
        log.event("[search] built pages index", version=store.version, pages=n, seconds=round(t.seconds, 1))
        _remove_others(folder, "pages-")
    return with_search_params(AnnIndex.load(folder), cfg)


def pins_index(run_dir: Path, store: Path, cfg: IndexConfig) -> AnnIndex:
    """The index of the pins' target vectors in the run's trained model's space (built when absent)."""
    from linksage.embed.batch import model_version
    from linksage.train.infer import load_model

    targets = np.load(Path(run_dir) / "content" / "pin_target.npy", mmap_mode="r")
    content_key = _manifest_key(Path(run_dir) / "content")
    version = model_version(Path(run_dir) / "train")
    folder = store / ANN_DIR / f"pins-{version}-{content_key}-{build_key(cfg, len(targets))}"
    if not (folder / "meta.json").exists():
        with log.Timer() as t:
            vectors = load_model(Path(run_dir) / "train").pin_vectors(targets)  # (n_pins, dim) unit rows
            index = AnnIndex.build(vectors, np.arange(len(vectors), dtype=np.int64), cfg)
            index.save(folder)
        log.event("[search] built pins index", pins=len(targets), seconds=round(t.seconds, 1))
        _remove_others(folder, "pins-")
    return with_search_params(AnnIndex.load(folder), cfg)


def _manifest_key(stage_dir: Path) -> str:
    path = stage_dir / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; has the {stage_dir.name} stage completed?")
    return str(json.loads(path.read_text()).get("key", "nokey"))[:16]


def _remove_others(keep: Path, prefix: str) -> None:
    for other in keep.parent.iterdir():
        if other != keep and other.name.startswith(prefix) and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
