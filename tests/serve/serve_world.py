"""A small run directory for the serving tests, made by the real stages wherever they exist.

ingest (synthetic world), graph, walk, train, embed (the Lance store and its ANN indices) and evaluate
run through ``linksage.pipeline.run_stages``. The content stage is written here with the real hashing
text encoder (``linksage.content.text``): page text from the crawl, else from the URL; pins' targets from
the synthetic pins' ``embedding`` column. It is sealed under the key the runner computes, so the later
stages take it as an up-to-date upstream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from linksage.config import Config, ContentConfig, config_to_dict, load_config
from linksage.content.text import HashingTextEncoder, page_text
from linksage.content.urltext import text_from_url
from linksage.pipeline import get_stage, run_stages, stage_key
from linksage.rundir import RunDir

TEXT_DIM = 32
OVERRIDES = (
    "ingest.synthetic.n_links=2500",
    "ingest.synthetic.n_topics=8",
    "ingest.synthetic.embedding_dim=32",
    "graph.cohesion_threshold=-1.0",  # keep every link: the hashing text and the targets share no space
    "walk.top_k=8",
    "walk.steps=400",
    "train.dims=[8, 16, 32]",
    "train.d_model=32",
    "train.layers=1",
    "train.heads=2",
    "train.neighbours=8",
    "train.batch_size=128",
    "train.random_negatives=128",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.eval_pages=200",
    "train.eval_pool=0",
    "train.device=cpu",
    "train.threads=1",  # a 17k-parameter model: more threads only add synchronisation
    "embed.device=cpu",
    "embed.day=2013-06-30",
    "evaluate.baselines=[]",
    "evaluate.kurtosis_pairs=2000",
    "evaluate.report_pages=2",
    "evaluate.device=cpu",
)


def world_config(train_steps: int = 15, overrides: tuple[str, ...] = ()) -> Config:
    cfg = load_config(None, [*OVERRIDES, f"train.steps={train_steps}", *overrides])
    content = ContentConfig(text_encoder="hashing", hashing_dim=TEXT_DIM, image_encoder="none", cache=False)
    return Config(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "content": content})


def write_content(root: Path, cfg: Config) -> None:
    """content/: page text, empty image tables, pins' text and targets; sealed under the runner's key."""
    rd = RunDir(root)
    enc = HashingTextEncoder(cfg.content.hashing_dim)
    pages = pq.read_table(root / "ingest" / "pages.parquet").to_pylist()
    texts = [page_text(p.get("title"), p.get("description"), p.get("body")) or text_from_url(p["url"]) for p in pages]
    pins = pq.read_table(root / "ingest" / "pins.parquet", columns=["text", "embedding"])
    out = rd.new_staging("content")
    n = len(pages)
    np.save(out / "page_text.npy", enc.encode(texts).astype(np.float16))
    np.save(out / "page_image.npy", np.zeros((n, 0), np.float16))
    np.save(out / "page_has_image.npy", np.zeros(n, bool))
    np.save(out / "pin_text.npy", enc.encode([t or "" for t in pins["text"].to_pylist()]).astype(np.float16))
    target = np.asarray(pins["embedding"].to_pylist(), dtype=np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    np.save(out / "pin_target.npy", target.astype(np.float16))
    boards = pq.read_table(root / "ingest" / "boards.parquet", columns=["text"])["text"].to_pylist()
    np.save(out / "board_text.npy", enc.encode([t or "" for t in boards]).astype(np.float16))  # board tokens
    key, parts = stage_key(get_stage("content"), cfg, rd)
    rd.seal(
        "content",
        out,
        {"stage": "content", "key": key, "key_parts": parts, "config": {"content": config_to_dict(cfg.content)}},
    )


def build_world(root: Path, train_steps: int = 15, overrides: tuple[str, ...] = ()) -> Config:
    """Every stage the server reads, in ``root``; returns the config it was made with."""
    cfg = world_config(train_steps, overrides)
    run_stages(cfg, root, ["ingest"])
    write_content(root, cfg)
    run_stages(cfg, root, ["graph", "walk", "train", "embed", "evaluate"])
    return cfg
