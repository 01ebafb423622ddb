"""Embed stage end to end (stored features -> Lance store) against model-only inference, same process.

Self-contained: writes a synthetic run directory (page text 384-d and mean-image 1280-d fp16 vectors,
degrees, K=20 walk neighbours with visit counts, canonical URLs) and a seeded, untrained default-size
model (d_model=256, 4 layers, 8 heads, K=20, dims 16..256), then times:

- model only: ``PageEmbedder.embed`` over every page with the features already on the device;
- end to end: ``embed_into_store`` into a fresh store (load the model and features from disk,
  fingerprint every page, diff against the store, embed in chunks, stream into one Lance version);
- a no-op rerun on the filled store (nothing changed: fingerprints and diff only).

    .venv/bin/python benchmarks/embed.py --device cpu                       # 2-core CPU: 3,000 pages
    .venv/bin/python benchmarks/embed.py --device cuda --pages 1000000      # one GPU

The last line is one JSON object: pages_per_s (end to end, median of repeats), model_pages_per_s,
ratio (end to end over model only), the breakdown, device and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from _machine import machine
from linksage.config.store import EmbedConfig
from linksage.embed.batch import embed_into_store, resolve_device
from linksage.model import EncoderConfig, LinkSageEncoder
from linksage.rundir import atomic_write_json
from linksage.train.infer import LinkSageModel, PageEmbedder, load_model
from linksage.train.target_space import identity_rotation

DIMS = (16, 32, 64, 128, 256)


def _unit_fp16(rng: np.random.Generator, n: int, dim: int, chunk: int = 1 << 17) -> np.ndarray:
    out = np.empty((n, dim), np.float16)
    for lo in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - lo), dim), dtype=np.float32)
        out[lo : lo + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_run(root: Path, pages: int, text_dim: int, image_dim: int, k: int, seed: int) -> Path:
    """A run directory holding everything the embed stage reads (docs/artifacts.md)."""
    rng = np.random.default_rng(seed)
    for stage in ("ingest", "content", "graph", "walk", "train"):
        (root / stage).mkdir(parents=True, exist_ok=True)
    urls = pa.array([f"https://site{i % 5000}.example.com/articles/{i}/some-slug-words" for i in range(pages)])
    pq.write_table(
        pa.table({"page_idx": pa.array(np.arange(pages, dtype=np.int32)), "url": urls}),
        root / "ingest" / "pages.parquet",
    )
    np.save(root / "content" / "page_text.npy", _unit_fp16(rng, pages, text_dim))
    np.save(root / "content" / "page_image.npy", _unit_fp16(rng, pages, image_dim))
    np.save(root / "content" / "page_has_image.npy", rng.random(pages) < 0.7)
    degree = rng.zipf(2.0, pages).clip(1, 10_000)
    np.save(root / "graph" / "page__pin.indptr.npy", np.concatenate([[0], np.cumsum(degree)]).astype(np.int64))
    neighbours = rng.integers(0, pages, (pages, k), dtype=np.int32)
    neighbours[rng.random((pages, k)) < 0.2] = -1
    np.save(root / "walk" / "neighbours.npy", neighbours)
    np.save(root / "walk" / "visits.npy", np.where(neighbours >= 0, rng.integers(1, 100, (pages, k)), 0).astype("f4"))
    torch.manual_seed(seed)
    encoder = LinkSageEncoder(
        EncoderConfig(
            text_dim=text_dim,
            image_dim=image_dim,
            image_slots=1,
            neighbours=k,
            output_dim=DIMS[-1],
            n_dims=len(DIMS),
            d_model=256,
            layers=4,
            heads=8,
        )
    )
    model = LinkSageModel(encoder, DIMS, identity_rotation(DIMS[-1]), image_mode="mean", degree_buckets=24)
    model.save(root / "train" / "model.pt")
    for stage in ("ingest", "content", "graph", "walk", "train"):
        atomic_write_json(root / stage / "manifest.json", {"stage": stage, "key": f"bench-{stage}"})
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pages", type=int, default=0, help="default: 1,000,000 on CUDA, 3,000 on CPU")
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--image-dim", type=int, default=1280)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=262_144)
    ap.add_argument("--repeats", type=int, default=0, help="default: 3 on CUDA, 2 on CPU")
    ap.add_argument("--workdir", type=Path, default=None, help="where the run directory goes (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    pages = args.pages or (1_000_000 if cuda else 3_000)
    repeats = args.repeats or (3 if cuda else 2)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="linksage-embed-bench-"))
    cfg = EmbedConfig(device=str(device), batch_size=args.batch, chunk_rows=args.chunk)

    t0 = time.perf_counter()
    run = write_run(work / "run", pages, args.text_dim, args.image_dim, args.k, args.seed)
    warm = write_run(work / "warm", 2_000 if cuda else 200, args.text_dim, args.image_dim, args.k, args.seed)
    embed_into_store(warm, work / "warm-store", cfg)  # compiles the fingerprint kernels, initialises the device
    print(f"setup: {pages:,} pages written in {time.perf_counter() - t0:.1f}s", flush=True)

    model = load_model(run / "train", device)
    embedder = PageEmbedder(model, model.features(run), device, bf16=cuda)
    embedder.embed(np.arange(min(pages, args.batch)), batch_size=args.batch)  # warm-up
    model_s = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        embedder.embed(np.arange(pages), batch_size=args.batch)
        sync(device)
        model_s.append(time.perf_counter() - t0)
    del embedder, model
    if cuda:
        torch.cuda.empty_cache()
    model_pps = pages / float(np.median(model_s))
    print(f"model only: {model_pps:,.0f} pages/s", flush=True)

    e2e_s, parts = [], []
    for r in range(repeats):
        store = work / f"store-{r}"
        t0 = time.perf_counter()
        report = embed_into_store(run, store, cfg)
        e2e_s.append(time.perf_counter() - t0)
        parts.append(report.timings)
        assert report.embedded == pages and report.result.committed
    t0 = time.perf_counter()
    noop = embed_into_store(run, work / "store-0", cfg)
    noop_s = time.perf_counter() - t0
    assert noop.embedded == 0 and not noop.result.committed
    pps = pages / float(np.median(e2e_s))
    breakdown = {k: round(float(np.median([p[k] for p in parts])), 3) for k in parts[0]}
    print(f"end to end: {pps:,.0f} pages/s ({breakdown}); no-op rerun {noop_s:.2f}s", flush=True)

    result: dict[str, object] = {
        "pages": pages,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "pages_per_s": round(pps),
        "model_pages_per_s": round(model_pps),
        "ratio": round(pps / model_pps, 3),
        "end_to_end_s": round(float(np.median(e2e_s)), 3),
        "breakdown_s": breakdown,
        "noop_rerun_s": round(noop_s, 3),
        "precision": "bf16" if cuda else "fp32",
        "tokens": 3 + (1 if args.image_dim else 0) + args.k * (2 if args.image_dim else 1),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(device),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
