"""A tiny run directory with every input of the embed stage: ingest tables, content, graph, walk, model.

The model is an untrained (seeded) encoder: embedding tests check plumbing, identity and fingerprints,
not quality. ``change_*`` helpers edit the inputs the way a new day would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from linksage.model import EncoderConfig, LinkSageEncoder
from linksage.rundir import atomic_write_json
from linksage.train.infer import LinkSageModel
from linksage.train.target_space import pca_rotation

STAGES = ("ingest", "content", "graph", "walk", "train")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_run(
    root: Path,
    n_pages: int = 300,
    n_pins: int = 400,
    text_dim: int = 16,
    target_dim: int = 32,
    k: int = 5,
    dims: tuple[int, ...] = (8, 16, 32),
    seed: int = 0,
    image_dim: int = 0,
) -> Path:
    """``image_dim`` > 0 gives pages mean-image vectors (70% of them) and the model image tokens."""
    rng = np.random.default_rng(seed)
    for stage in STAGES:
        (root / stage).mkdir(parents=True, exist_ok=True)
    first_seen = 1_364_774_400 + rng.integers(0, 30, n_pages) * 86_400  # April 2013
    pq.write_table(
        pa.table(
            {
                "page_idx": pa.array(np.arange(n_pages, dtype=np.int32)),
                "url": [f"https://site{i % 7}.example.com/page/{i}" for i in range(n_pages)],
                "domain_idx": pa.array((np.arange(n_pages) % 7).astype(np.int32)),
                "first_seen": pa.array(first_seen),
            }
        ),
        root / "ingest" / "pages.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(np.arange(n_pins, dtype=np.int32)),
                "pin_id": [f"pin{i}" for i in range(n_pins)],
                "text": [f"pin text {i}" for i in range(n_pins)],
            }
        ),
        root / "ingest" / "pins.parquet",
    )
    np.save(root / "content" / "page_text.npy", _unit(rng.normal(size=(n_pages, text_dim))).astype(np.float16))
    has_image = rng.random(n_pages) < 0.7 if image_dim else np.zeros(n_pages, bool)
    image = _unit(rng.normal(size=(n_pages, image_dim))) * has_image[:, None] if image_dim else np.zeros((n_pages, 0))
    np.save(root / "content" / "page_image.npy", image.astype(np.float16))
    np.save(root / "content" / "page_has_image.npy", has_image)
    targets = _unit(rng.normal(size=(n_pins, target_dim))).astype(np.float16)
    np.save(root / "content" / "pin_target.npy", targets)
    degree = rng.integers(1, 5, n_pages)
    np.save(root / "graph" / "page__pin.indptr.npy", np.concatenate([[0], np.cumsum(degree)]).astype(np.int64))
    neighbours = rng.integers(0, n_pages, (n_pages, k)).astype(np.int32)
    neighbours[rng.random((n_pages, k)) < 0.3] = -1
    visits = np.where(neighbours >= 0, rng.integers(1, 40, (n_pages, k)), 0).astype(np.float32)
    np.save(root / "walk" / "neighbours.npy", neighbours)
    np.save(root / "walk" / "visits.npy", visits)
    torch.manual_seed(seed)
    encoder = LinkSageEncoder(
        EncoderConfig(
            text_dim=text_dim,
            image_dim=image_dim,
            image_slots=1,
            neighbours=k,
            output_dim=dims[-1],
            n_dims=len(dims),
            d_model=32,
            layers=1,
            heads=2,
        )
    )
    LinkSageModel(
        encoder=encoder, dims=dims, rotation=pca_rotation(targets), image_mode="each", degree_buckets=24
    ).save(root / "train" / "model.pt")
    for stage in STAGES:
        seal(root, stage)
    return root


def seal(root: Path, stage: str, key: str | None = None) -> None:
    atomic_write_json(root / stage / "manifest.json", {"stage": stage, "key": key or f"world-{stage}"})


def change_text(root: Path, pages: list[int], seed: int = 1) -> None:
    """New content for ``pages`` (as a re-crawl would give)."""
    path = root / "content" / "page_text.npy"
    text = np.load(path)
    text[pages] = _unit(np.random.default_rng(seed).normal(size=(len(pages), text.shape[1]))).astype(np.float16)
    np.save(path, text)
    seal(root, "content", f"world-content-{seed}")


def change_neighbours(root: Path, pages: list[int]) -> None:
    """Reverse the neighbour order of ``pages`` (new walks), keeping -1 padding last."""
    path = root / "walk" / "neighbours.npy"
    nbr = np.load(path)
    for p in pages:
        nbr[p] = np.roll(nbr[p], 1)
    np.save(path, nbr)
