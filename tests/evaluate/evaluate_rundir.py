"""A small run directory laid out as the upstream stages write it (docs/artifacts.md), for stage tests.

Pages and pins carry a planted topic; pins' titles and half the pages' URLs name the topic word, the
other pages have opaque URLs. Page text and pin targets share one space (as when both come from one
text encoder), so the zero-shot baseline is valid; walk neighbours mostly share the page's topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from linksage.config import Config, load_config
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import RunDir, atomic_write_json

WORDS = ["pizza", "garden", "rocket", "violin", "python", "soccer", "desert", "coffee"]
T0 = 1_356_998_400  # 2013-01-01 UTC
DAY = 86_400


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_run_dir(root: Path, n_pages: int = 400, dim: int = 32, k: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n_topics = len(WORDS)
    topic = rng.integers(0, n_topics, n_pages)
    centroid = _unit(rng.normal(size=(n_topics, dim)))
    page_text = _unit(0.5 * centroid[topic] + _unit(rng.normal(size=(n_pages, dim)))).astype(np.float16)
    degree = rng.integers(1, 5, n_pages)
    indptr = np.concatenate([[0], np.cumsum(degree)]).astype(np.int64)
    n_pins = int(indptr[-1])
    indices = rng.permutation(n_pins).astype(np.int32)
    pin_page = np.empty(n_pins, dtype=np.int64)
    pin_page[indices] = np.repeat(np.arange(n_pages), degree)
    pin_topic = topic[pin_page]
    pin_target = _unit(centroid[pin_topic] + 0.7 * rng.normal(size=(n_pins, dim)) / np.sqrt(dim)).astype(np.float16)
    neighbours = np.full((n_pages, k), -1, dtype=np.int32)
    visits = np.zeros((n_pages, k), dtype=np.float32)
    by_topic = [np.flatnonzero(topic == t) for t in range(n_topics)]
    for p in range(n_pages):
        n = int(rng.integers(k // 2, k + 1))
        same = rng.random(n) < 0.85
        neighbours[p, :n] = np.where(same, rng.choice(by_topic[topic[p]], n), rng.integers(0, n_pages, n))
        visits[p, :n] = np.sort(rng.integers(1, 40, n))[::-1]
    first_seen = T0 + np.sort(rng.integers(0, 150, n_pages)) * DAY
    pin_created = first_seen[pin_page] + rng.integers(0, 5, n_pins) * DAY
    for p in range(n_pages):
        first_seen[p] = pin_created[indices[indptr[p] : indptr[p + 1]]].min()
    domain = rng.integers(0, 12, n_pages)
    domain[n_pages - 20 :] = 12 + np.arange(20) % 4  # late pages on new domains
    urls = [
        f"https://site{domain[i]}.com/{WORDS[topic[i]]}-story-{i}"
        if i % 2
        else f"https://site{domain[i]}.com/p/{i:06d}"
        for i in range(n_pages)
    ]
    texts = [f"my {WORDS[t]} post {j}" for j, t in enumerate(pin_topic)]

    for stage in ("ingest", "content", "graph", "walk"):
        (root / stage).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "page_idx": pa.array(np.arange(n_pages, dtype=np.int32)),
                "url": urls,
                "domain_idx": pa.array(domain.astype(np.int32)),
                "first_seen": pa.array(first_seen.astype(np.int64)),
            }
        ),
        root / "ingest" / "pages.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(np.arange(n_pins, dtype=np.int32)),
                "pin_id": [f"pin{i}" for i in range(n_pins)],
                "text": texts,
                "created_at": pa.array(pin_created.astype(np.int64)),
            }
        ),
        root / "ingest" / "pins.parquet",
    )
    np.save(root / "content" / "page_text.npy", page_text)
    np.save(root / "content" / "page_image.npy", np.zeros((n_pages, 0), dtype=np.float16))
    np.save(root / "content" / "page_has_image.npy", np.zeros(n_pages, dtype=bool))
    np.save(root / "content" / "pin_target.npy", pin_target)
    np.save(root / "graph" / "page__pin.indptr.npy", indptr)
    np.save(root / "graph" / "page__pin.indices.npy", indices)
    np.save(root / "walk" / "neighbours.npy", neighbours)
    np.save(root / "walk" / "visits.npy", visits)
    for stage in ("ingest", "content", "graph", "walk"):
        atomic_write_json(root / stage / "manifest.json", {"stage": stage, "key": f"planted-{stage}"})
    return root


def config(overrides: Sequence[str]) -> Config:
    return load_config(None, list(overrides))


def run_stage(run: Callable[[StageContext], StageResult], name: str, cfg: Config, root: Path) -> StageResult:
    """Run one stage function into a staging folder and seal it, as the pipeline runner does."""
    rd = RunDir(root)
    staging = rd.new_staging(name)
    result: StageResult = run(StageContext(config=cfg, run_dir=rd, stage=name, out=staging))
    rd.seal(name, staging, {"stage": name, "key": f"test-{name}", "counts": result.counts, "metrics": result.metrics})
    rd.clear_work(name)
    return result
