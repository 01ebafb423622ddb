"""Embed stage end to end (stored features -> Lance store) against model-only inference, same process.

Self-contained: writes a synthetic run directory (page text 384-d and mean-image 1280-d fp16 vectors,
degrees, K=20 walk neighbours with visit counts, canonical URLs) and a seeded, untrained default-size
model (d_model=256, 4 layers, 8 heads, K=20, dims 16..256), then times:

- model only: ``PageEmbedder.embed`` over every page with the features already on the device;
- end to end: ``embed_into_store`` into a fresh store (load the model and features from disk, upload
  them, embed in chunks, stream into one Lance version; a first fill needs no diff, so every page is
  fingerprinted beside the upload and inference, and the first record batch waits for the fingerprints);
- a no-op rerun on the filled store (nothing changed: fingerprints and diff only).

A warm-up run on a small run directory with the same settings comes first: it compiles the hash kernels
and, with ``--compile``, the encoder (torch.compile's one-off cost, reported as ``warmup_s``).

    .venv/bin/python benchmarks/embed.py --device cpu                            # 2-core CPU: 3,000 pages
    .venv/bin/python benchmarks/embed.py --device cpu --pages 200000 --d-model 32 --layers 1  # data path
    .venv/bin/python benchmarks/embed.py --device cuda --pages 1000000 --sweep   # one GPU

``--sweep`` first times the model alone at each ``--sweep-batches`` size (eager at the first size as the
baseline, then the ``--compile`` mode), then runs end to end at the fastest size once per
``--sweep-writers`` Lance write parallelism, and reports the fastest. The last line is one JSON object:
pages_per_s (end to end, median of repeats), model_pages_per_s, ratio (end to end over model only),
breakdown_s (medians), the sweep, device and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from torch._dynamo.utils import counters

from _machine import machine
from linksage.config.store import EmbedConfig
from linksage.embed.batch import batch_size_for, embed_into_store, resolve_device
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


def write_run(
    root: Path,
    pages: int,
    text_dim: int = 384,
    image_dim: int = 1280,
    k: int = 20,
    seed: int = 0,
    d_model: int = 256,
    layers: int = 4,
) -> Path:
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
            d_model=d_model,
            layers=layers,
            heads=8 if d_model % 8 == 0 else 1,
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


def model_only(embedder: PageEmbedder, pages: int, batch: int, repeats: int) -> float:
    """Pages per second of ``embedder.embed`` over every page (median of repeats, after one warm-up call)."""
    embedder.embed(np.arange(min(pages, batch)), batch_size=batch)  # warm-up (compiles at this batch size)
    seconds = []
    for _ in range(repeats):
        sync(embedder.device)
        t0 = time.perf_counter()
        embedder.embed(np.arange(pages), batch_size=batch)
        sync(embedder.device)
        seconds.append(time.perf_counter() - t0)
    return pages / float(np.median(seconds))


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pages", type=int, default=0, help="default: 1,000,000 on CUDA, 3,000 on CPU")
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--image-dim", type=int, default=1280)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--d-model", type=int, default=256, help="a small model (e.g. 32, 1 layer) isolates the data path")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=0, help="pages per forward pass (default: embed.batch_size's)")
    ap.add_argument("--chunk", type=int, default=131_072, help="pages per chunk streamed to the store")
    ap.add_argument("--compile", default="auto", help="torch.compile mode or off (auto: default on CUDA, off on CPU)")
    ap.add_argument("--write-parallelism", type=int, default=0, help="Lance writers of the first fill (0: Lance's)")
    ap.add_argument("--sweep", action="store_true", help="model only at each --sweep-batches size, then the best")
    ap.add_argument("--sweep-batches", default="4096,8192,16384,32768")
    ap.add_argument("--sweep-writers", default="0,4,8", help="end to end at each Lance write parallelism (--sweep)")
    ap.add_argument("--repeats", type=int, default=0, help="default: 3 on CUDA, 2 on CPU")
    ap.add_argument("--workdir", type=Path, default=None, help="where the run directory goes (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    pages = args.pages or (1_000_000 if cuda else 3_000)
    repeats = args.repeats or (3 if cuda else 2)
    compile_mode = ("default" if cuda else "off") if args.compile == "auto" else args.compile
    work = Path(args.workdir or tempfile.mkdtemp(prefix="linksage-embed-bench-"))
    shape = dict(text_dim=args.text_dim, image_dim=args.image_dim, k=args.k, d_model=args.d_model, layers=args.layers)

    t0 = time.perf_counter()
    run = write_run(work / "run", pages, seed=args.seed, **shape)  # type: ignore[arg-type]
    warm = write_run(work / "warm", 2_000 if cuda else 200, seed=args.seed, **shape)  # type: ignore[arg-type]
    print(f"setup: {pages:,} pages written in {time.perf_counter() - t0:.1f}s", flush=True)

    model = load_model(run / "train", device)
    eager = PageEmbedder(model, model.features(run, copy=False), device, bf16=cuda)
    default_batch = batch_size_for(EmbedConfig(batch_size=args.batch), device)
    sweep: list[dict[str, object]] = []
    if args.sweep:
        sizes = [int(b) for b in args.sweep_batches.split(",")]
        # eager first: torch.compile starts worker processes that would slow a baseline measured after it
        runs = [("off", b) for b in (sizes if compile_mode == "off" else sizes[:1])]
        runs += [(compile_mode, b) for b in sizes] if compile_mode != "off" else []
        for mode, b in runs:
            t0 = time.perf_counter()
            emb = eager if mode == "off" else PageEmbedder(model, eager.features, device, bf16=cuda, compile=mode)
            pps = model_only(emb, pages, b, repeats)
            sweep.append(
                {"compile": mode, "batch": b, "model_pages_per_s": round(pps), "s": round(time.perf_counter() - t0, 1)}
            )
            print(f"  model only, compile={mode}, batch {b:,}: {pps:,.0f} pages/s", flush=True)
        best = max((r for r in sweep if r["compile"] == compile_mode), key=lambda r: r["model_pages_per_s"])  # type: ignore[arg-type,return-value]
        batch, model_pps = int(best["batch"]), float(best["model_pages_per_s"])  # type: ignore[arg-type]
        del emb
    else:
        batch = default_batch
        embedder = eager if compile_mode == "off" else PageEmbedder(model, eager.features, device, cuda, compile_mode)
        model_pps = model_only(embedder, pages, batch, repeats)
        del embedder
    del eager, model
    if cuda:
        torch.cuda.empty_cache()
    print(f"model only: {model_pps:,.0f} pages/s (compile={compile_mode}, batch {batch:,})", flush=True)

    cfg = EmbedConfig(device=str(device), batch_size=batch, chunk_rows=args.chunk, compile=compile_mode)
    t0 = time.perf_counter()
    embed_into_store(warm, work / "warm-store", cfg)  # hash kernels, device, the compiled graph at this batch
    warmup_s = time.perf_counter() - t0
    writers = [int(w) for w in args.sweep_writers.split(",")] if args.sweep else [args.write_parallelism]
    by_writers: dict[int, tuple[list[float], list[dict[str, float]]]] = {}
    for w in writers:
        cfg = dataclasses.replace(cfg, write_parallelism=w)
        e2e_s, parts = [], []
        for r in range(repeats):
            store = work / f"store-{w}-{r}"
            t0 = time.perf_counter()
            report = embed_into_store(run, store, cfg)
            e2e_s.append(time.perf_counter() - t0)
            parts.append(report.timings)
            assert report.embedded == pages and report.result.committed and report.compile_mode == compile_mode
            rate = pages / e2e_s[-1]
            print(f"  end to end, writers {w}, run {r + 1}: {rate:,.0f} pages/s {_rounded(report.timings)}", flush=True)
            if r + 1 < repeats or w != writers[-1]:
                shutil.rmtree(store)  # keeps the disk to one store (1M pages: 1.1 GB)
        by_writers[w] = (e2e_s, parts)
        if len(writers) > 1:
            sweep.append({"write_parallelism": w, "pages_per_s": round(pages / float(np.median(e2e_s)))})
    best_w = min(by_writers, key=lambda w: float(np.median(by_writers[w][0])))
    e2e_s, parts = by_writers[best_w]
    cfg = dataclasses.replace(cfg, write_parallelism=best_w)
    filled = work / f"store-{writers[-1]}-{repeats - 1}"
    t0 = time.perf_counter()
    noop = embed_into_store(run, filled, cfg)
    noop_s = time.perf_counter() - t0
    assert noop.embedded == 0 and not noop.result.committed
    pps = pages / float(np.median(e2e_s))
    breakdown = {k: round(float(np.median([p[k] for p in parts])), 3) for k in parts[0]}
    print(f"end to end: {pps:,.0f} pages/s, {pps / model_pps:.2f} of the model alone", flush=True)
    print(
        "  breakdown (median s): "
        f"load {breakdown['load_s']:.2f} | upload {breakdown['upload_s']:.2f} | embed + write "
        f"{breakdown['embed_write_s']:.2f} (model {breakdown['infer_s']:.2f}, waiting for the store "
        f"{breakdown['write_wait_s']:.2f}, for the fingerprints {breakdown['keys_wait_s']:.2f}) | "
        f"fingerprints {breakdown['fingerprint_s']:.2f} beside upload and embed + write",
        flush=True,
    )
    print(f"  no-op rerun {noop_s:.2f}s; warm-up (kernels, compile) {warmup_s:.1f}s", flush=True)

    result: dict[str, object] = {
        "pages": pages,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "pages_per_s": round(pps),
        "model_pages_per_s": round(model_pps),
        "ratio": round(pps / model_pps, 3),
        "end_to_end_s": round(float(np.median(e2e_s)), 3),
        "breakdown_s": breakdown,
        "noop_rerun_s": round(noop_s, 3),
        "warmup_s": round(warmup_s, 1),
        "compile": compile_mode,
        "batch": batch,
        "chunk": args.chunk,
        "write_parallelism": best_w,
        "sweep": sweep,
        "compiled_graphs": int(counters["stats"]["unique_graphs"]),  # one per batch size: more = recompiles
        "precision": "bf16" if cuda else "fp32",
        "d_model": args.d_model,
        "layers": args.layers,
        "tokens": 3 + (1 if args.image_dim else 0) + args.k * (2 if args.image_dim else 1),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(device),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


if __name__ == "__main__":
    main(sys.argv[1:])
