"""A tiny planted world for training tests: topics, weakly informative page text, same-topic neighbours.

Pages and pins carry a planted topic. A pin's target is its topic's centroid plus noise; a page's own text
reflects its topic only weakly, while most of its walk neighbours share its topic, so a model that reads
the neighbours can recover the topic and a content-only model often cannot. ``write_run_dir`` lays the
arrays out as the upstream stages do (docs/artifacts.md), each folder sealed by a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from linksage.config.train import TrainConfig
from linksage.model import EncoderConfig, LinkSageEncoder
from linksage.rundir import atomic_write_json
from linksage.train.features import page_features_from_arrays
from linksage.train.loop import TrainData, make_eval_set
from linksage.train.pairs import TRAIN, VAL, pairs_of, positive_pairs, split_pages
from linksage.train.target_space import identity_rotation, to_target_space

DAY = 86_400
T0 = 1_356_998_400  # 2013-01-01 UTC


def tiny_config(**kw: object) -> TrainConfig:
    """A train config small enough for the planted world on one CPU thread; ``kw`` overrides any field."""
    base: dict[str, object] = dict(
        dims=(8, 16, 32),
        d_model=32,
        layers=2,
        heads=4,
        mlp_ratio=2,
        neighbours=6,
        batch_size=64,
        random_negatives=64,
        val_fraction=0.2,
        test_fraction=0.1,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@dataclass
class World:
    page_text: np.ndarray  # (n_pages, Dt) float16, unit rows
    page_topic: np.ndarray  # (n_pages,)
    pin_target: np.ndarray  # (n_pins, Dtarget) float16, unit rows
    pin_topic: np.ndarray  # (n_pins,)
    indptr: np.ndarray  # (n_pages + 1,) int64: page -> pin CSR
    indices: np.ndarray  # (n_links,) int32
    neighbours: np.ndarray  # (n_pages, K) int32, -1 padded
    visits: np.ndarray  # (n_pages, K) float32
    first_seen: np.ndarray  # (n_pages,) int64 unix s
    pin_created: np.ndarray  # (n_pins,) int64 unix s

    @property
    def n_pages(self) -> int:
        return len(self.page_text)

    @property
    def n_pins(self) -> int:
        return len(self.pin_target)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_world(
    n_pages: int = 600,
    n_topics: int = 12,
    text_dim: int = 32,
    target_dim: int = 32,
    k: int = 8,
    text_signal: float = 0.25,
    target_noise: float = 0.6,
    same_topic: float = 0.85,
    seed: int = 0,
) -> World:
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, n_topics, n_pages)
    text_centroid = _unit(rng.normal(size=(n_topics, text_dim)))
    target_centroid = _unit(rng.normal(size=(n_topics, target_dim)))
    noise = _unit(rng.normal(size=(n_pages, text_dim)))
    page_text = _unit(text_signal * text_centroid[topic] + noise).astype(np.float16)

    degree = rng.integers(1, 4, n_pages)  # 1..3 pins per page, each pin links to one page
    indptr = np.concatenate([[0], np.cumsum(degree)]).astype(np.int64)
    n_pins = int(indptr[-1])
    indices = rng.permutation(n_pins).astype(np.int32)
    pin_topic = np.empty(n_pins, dtype=np.int64)
    pin_topic[indices] = np.repeat(topic, degree)
    pin_noise = target_noise * rng.normal(size=(n_pins, target_dim)) / np.sqrt(target_dim)
    pin_target = _unit(target_centroid[pin_topic] + pin_noise).astype(np.float16)

    by_topic = [np.flatnonzero(topic == t) for t in range(n_topics)]
    neighbours = np.full((n_pages, k), -1, dtype=np.int32)
    visits = np.zeros((n_pages, k), dtype=np.float32)
    for p in range(n_pages):
        n = rng.integers(k // 2, k + 1)  # some pages have fewer neighbours: -1 padding
        same = rng.random(n) < same_topic
        pool = by_topic[topic[p]]
        picks = np.where(same, rng.choice(pool, n), rng.integers(0, n_pages, n))
        neighbours[p, :n] = picks
        visits[p, :n] = np.sort(rng.integers(1, 50, n))[::-1]

    first_seen = T0 + rng.integers(0, 150, n_pages) * DAY
    pin_page = np.repeat(np.arange(n_pages), degree)
    pin_created = np.empty(n_pins, dtype=np.int64)
    pin_created[indices] = first_seen[pin_page] + rng.integers(0, 20, n_pins) * DAY
    for p in range(n_pages):  # first_seen is the earliest linking pin, as ingest defines it
        first_seen[p] = pin_created[indices[indptr[p] : indptr[p + 1]]].min()
    return World(page_text, topic, pin_target, pin_topic, indptr, indices, neighbours, visits, first_seen, pin_created)


def write_run_dir(world: World, root: Path) -> Path:
    """The upstream stages' artifacts of ``world`` under ``root``, each folder sealed by a manifest."""
    ingest, content, graph, walk = (root / s for s in ("ingest", "content", "graph", "walk"))
    for d in (ingest, content, graph, walk):
        d.mkdir(parents=True, exist_ok=True)
    n_pages, n_pins = world.n_pages, world.n_pins
    pq.write_table(
        pa.table(
            {
                "page_idx": pa.array(np.arange(n_pages, dtype=np.int32)),
                "url": [f"https://example.com/page/{i}" for i in range(n_pages)],
                "domain_idx": pa.array(np.zeros(n_pages, dtype=np.int32)),
                "first_seen": pa.array(world.first_seen),
            }
        ),
        ingest / "pages.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(np.arange(n_pins, dtype=np.int32)),
                "pin_id": [f"pin{i}" for i in range(n_pins)],
                "text": [""] * n_pins,
                "created_at": pa.array(world.pin_created),
            }
        ),
        ingest / "pins.parquet",
    )
    page_of_link = np.repeat(np.arange(n_pages, dtype=np.int32), np.diff(world.indptr))
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(world.indices),
                "page_idx": pa.array(page_of_link),
                "cohesion": pa.array(np.full(len(page_of_link), np.nan, dtype=np.float32)),
            }
        ),
        ingest / "links.parquet",
    )
    np.save(content / "page_text.npy", world.page_text)
    np.save(content / "page_image.npy", np.zeros((n_pages, 0), dtype=np.float16))
    np.save(content / "page_has_image.npy", np.zeros(n_pages, dtype=bool))
    np.save(content / "pin_target.npy", world.pin_target)
    np.save(graph / "page__pin.indptr.npy", world.indptr)
    np.save(graph / "page__pin.indices.npy", world.indices)
    np.save(walk / "neighbours.npy", world.neighbours)
    np.save(walk / "visits.npy", world.visits)
    for stage in ("ingest", "content", "graph", "walk"):
        atomic_write_json(root / stage / "manifest.json", {"stage": stage, "key": f"planted-{stage}"})
    return root


def train_data(world: World, cfg: TrainConfig) -> tuple[TrainData, np.ndarray]:
    """In-memory TrainData (CPU) of ``world`` under ``cfg``'s split, as the stage builds it; and the split."""
    pairs = positive_pairs(world.indptr, world.indices)
    split = split_pages(np.diff(world.indptr), cfg, world.first_seen)
    train, val = pairs_of(pairs, split, TRAIN), pairs_of(pairs, split, VAL)
    feats = page_features_from_arrays(
        world.page_text, np.diff(world.indptr), world.neighbours, world.visits, k=cfg.neighbours
    )
    targets = to_target_space(world.pin_target, identity_rotation(world.pin_target.shape[1]), cfg.output_dim)
    cpu = torch.device("cpu")
    data = TrainData(
        features=feats,
        targets=torch.from_numpy(targets),
        pair_page=torch.from_numpy(train.page.astype(np.int64)),
        pair_pin=torch.from_numpy(train.pin.astype(np.int64)),
        val=make_eval_set(val, world.n_pins, cfg.eval_pages, cfg.eval_pool, cfg.seed, cpu),
    )
    return data, split


def encoder_for(data: TrainData, cfg: TrainConfig) -> LinkSageEncoder:
    torch.manual_seed(cfg.seed)
    f = data.features
    return LinkSageEncoder(
        EncoderConfig(
            text_dim=f.text_dim,
            image_dim=f.image_dim,
            image_slots=f.image_slots,
            neighbours=cfg.neighbours,
            output_dim=cfg.output_dim,
            n_dims=len(cfg.dims),
            d_model=cfg.d_model,
            layers=cfg.layers,
            heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            dropout=cfg.dropout,
            degree_buckets=cfg.degree_buckets,
            temperature_init=cfg.temperature_init,
        )
    )


def write_boards(world: World, root: Path) -> Path:
    """Board tables for the run at ``root``: each pin on the board of its planted topic (graph/pin__board,
    board__pin) and a random text vector per board (content/board_text.npy)."""
    pins = np.arange(world.n_pins)
    n_boards = int(world.pin_topic.max()) + 1
    for name, (src, dst, n) in {
        "pin__board": (pins, world.pin_topic, world.n_pins),
        "board__pin": (world.pin_topic, pins, n_boards),
    }.items():
        order = np.argsort(src, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
        np.save(root / "graph" / f"{name}.indptr.npy", indptr)
        np.save(root / "graph" / f"{name}.indices.npy", dst[order].astype(np.int32))
    text = np.random.default_rng(7).normal(size=(n_boards, world.page_text.shape[1])).astype(np.float16)
    np.save(root / "content" / "board_text.npy", text)
    return root
