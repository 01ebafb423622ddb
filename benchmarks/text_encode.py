"""Text encoding throughput: our MiniLM path against a plain ``SentenceTransformer.encode``, same titles.

Both encode the same Reddit post titles (``link_posts/part-1.parquet``, then part-0 when ``--n`` asks
for more) in this process:

- baseline: ``SentenceTransformer(<all-MiniLM-L6-v2>, device=...).encode(titles)`` with its defaults
            (batch size 32), in fp32 (cast explicitly: a folder of fp16 weights loads as fp16);
- ours:     ``linksage.content.text.create_text_encoder`` as the content stage builds it (direct Rust
            tokenizer, length bucketing, inference mode; fp32 on CPU; on CUDA fp16, large batches and
            tokenising in background threads while the GPU encodes), unless ``--precision`` says
            otherwise, e.g. ``int8`` on CPU.

The titles are cut into ``--blocks`` blocks; each block is encoded by both, alternating which goes
first, so a shared machine's load falls on both alike. ``ratio`` is the median over blocks of the
per-block speed ratio; the throughputs are totals over all blocks. ``cosine_agreement`` is the mean
cosine between our vectors and the baseline's fp32 vectors (``cosine_min`` the worst title).

``phases`` (always on CUDA, ``--phases`` elsewhere) times the parts alone over all titles: our
tokenising, the transformers tokenizer call, and the model on ready device batches; ``--sweep`` times
our whole path over all titles for several batch sizes and tokenizer thread counts and then runs the
blocks with the fastest setting.

    .venv/bin/python benchmarks/text_encode.py                           # CPU, 20,000 titles
    .venv/bin/python benchmarks/text_encode.py --precision int8          # the opt-in int8 CPU path

On a GPU machine without the MiniLM package or ../shared, carry the model and the titles (docs/encoders.md)::

    .venv/bin/python benchmarks/pack_minilm.py .carry/text-encode/minilm        # fp16 copy, 45 MB
    .venv/bin/python benchmarks/text_encode.py --save-titles .carry/text-encode/titles-20k.parquet
    python benchmarks/text_encode.py --device cuda --sweep \
        --model-path .carry/text-encode/minilm --posts .carry/text-encode/titles-20k.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from _machine import machine
from linksage.config.content import ContentConfig
from linksage.content._tokens import pad_batch, plan_batches
from linksage.content.text import SentenceTransformerEncoder, create_text_encoder, minilm_path, resolve_device
from linksage.errors import LinksageError

POSTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "reddit-top-2.5m" / "link_posts"
SWEEP_BATCH_SIZES = (1024, 2048, 4096, 8192)
SWEEP_THREADS = (1, 2, 4)


def load_titles(posts: Path, n: int) -> list[str]:
    """The first ``n`` titles of part-1 then part-0 of a ``link_posts`` folder, or of one Parquet file."""
    titles: list[str] = []
    for part in [posts] if posts.is_file() else [posts / "part-1.parquet", posts / "part-0.parquet"]:
        if len(titles) >= n:
            break
        titles += pq.read_table(part, columns=["title"]).column("title").to_pylist()[: n - len(titles)]
    return [t or "" for t in titles]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeats: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs, the device drained before and after."""
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def phases(ours: SentenceTransformerEncoder, titles: Sequence[str], device: str, repeats: int) -> dict[str, float]:
    """Titles/s of each part alone: where the whole path's time goes."""
    import torch

    n = len(titles)
    tokens = ours.tokens
    out = {
        "tokenise_titles_per_s": n / timed(lambda: tokens(titles), device, repeats),
        "hf_tokenise_titles_per_s": n / timed(lambda: tokens.hf_ids(titles), device, repeats),
    }
    ids = tokens(titles)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    batches = []
    for rows in plan_batches(lengths, ours.batch_size, ours.batch_tokens):
        input_ids, mask = pad_batch(ids, rows, tokens.pad_id)
        batches.append({"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)})
    dev = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def model_only() -> None:
        with torch.inference_mode():
            for feats in dev:
                ours.model(dict(feats))["sentence_embedding"].float()

    model_only()  # warm-up
    out["model_only_titles_per_s"] = n / timed(model_only, device, repeats)
    out["padded_tokens_per_title"] = sum(b["input_ids"].numel() for b in batches) / n
    out["tokens_per_title"] = float(lengths.mean())
    return {k: round(v, 1) for k, v in out.items()}


def sweep(
    ours: SentenceTransformerEncoder,
    titles: list[str],
    device: str,
    batch_sizes: list[int],
    threads_grid: list[int],
    repeats: int,
) -> list[dict[str, float]]:
    """Our whole path over all titles, per (batch size, tokenizer threads); the median of ``repeats`` runs."""
    rows = []
    for batch_size in batch_sizes:
        for threads in threads_grid if ours.overlap else [ours.tokenizer_threads]:
            ours.batch_size, ours.tokenizer_threads = batch_size, threads
            ours.encode(titles[: 2 * batch_size])  # warm the allocator for this batch shape
            rate = len(titles) / timed(lambda: ours.encode(titles), device, repeats)
            rows.append({"batch_size": batch_size, "tokenizer_threads": threads, "titles_per_s": round(rate, 1)})
            print(f"sweep: batch {batch_size:5d}, {threads} tokenizer threads: {rate:,.0f} titles/s", flush=True)
    return rows


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--posts", type=Path, default=POSTS, help="folder with part-1.parquet (and part-0), or a file")
    p.add_argument("--save-titles", type=Path, help="write the --n titles to this Parquet file and stop")
    p.add_argument("--n", type=int, default=20_000, help="titles to encode")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"])
    p.add_argument("--model-path", type=Path, help="a sentence-transformers folder (default: the MiniLM package's)")
    p.add_argument("--batch-size", type=int, default=0, help="our batch size (0 = the content config default)")
    p.add_argument("--tokenizer-threads", type=int, default=0, help="our background tokenizer threads (0 = default)")
    p.add_argument("--blocks", type=int, default=8, help="alternating timed blocks; the ratio is their median")
    p.add_argument("--overlap", action="store_true", help="tokenise in background threads on the CPU too")
    p.add_argument("--phases", action="store_true", help="also time the parts alone (always on with CUDA)")
    p.add_argument("--sweep", action="store_true", help="time batch sizes x tokenizer threads, then use the best")
    p.add_argument("--sweep-batch-sizes", type=_ints, default=list(SWEEP_BATCH_SIZES), help="e.g. 1024,4096")
    p.add_argument("--sweep-threads", type=_ints, default=list(SWEEP_THREADS), help="e.g. 1,2,4")
    p.add_argument("--repeats", type=int, default=3, help="runs per sweep setting and phase (their median)")
    args = p.parse_args(argv)
    if not args.posts.is_file() and not (args.posts / "part-1.parquet").exists():
        print(f"{args.posts}/part-1.parquet is missing: the benchmark needs ../shared/data", file=sys.stderr)
        return 1
    if args.save_titles:  # for a machine without ../shared: the titles travel as one small file
        import pyarrow as pa

        titles = load_titles(args.posts, args.n)
        pq.write_table(pa.table({"title": titles}), args.save_titles)
        print(json.dumps({"out": str(args.save_titles), "n": len(titles)}))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    try:
        device = resolve_device(args.device)
        model_path = args.model_path or minilm_path()
    except LinksageError as exc:
        print(exc, file=sys.stderr)
        return 1
    titles = load_titles(args.posts, args.n)
    cfg = replace(ContentConfig(), text_precision=args.precision, device=device)
    if args.model_path:
        cfg = replace(cfg, text_encoder="path", text_model_path=str(args.model_path))
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size, gpu_batch_size=args.batch_size)
    t0 = time.perf_counter()
    ours = create_text_encoder(cfg, device)
    assert isinstance(ours, SentenceTransformerEncoder)
    if args.tokenizer_threads:
        ours.tokenizer_threads = args.tokenizer_threads
    ours.overlap = ours.overlap or args.overlap
    blocks = np.array_split(np.arange(len(titles)), args.blocks)
    warm = [titles[i] for i in blocks[0]] if device == "cuda" else titles[:512]
    errors: dict[str, str] = {}
    try:
        ours.encode(warm)  # load, calibrate (int8), warm up (on CUDA a whole block: the allocator sees its shapes)
    except Exception as exc:  # a GPU run is one call: still measure, without the overlap, and say why
        if not ours.overlap:
            raise
        traceback.print_exc()
        errors["overlap"] = repr(exc)
        ours.overlap = False
        ours.encode(warm)
    load_s = time.perf_counter() - t0
    baseline = SentenceTransformer(str(model_path), device=device, local_files_only=True)
    baseline.float()
    baseline.eval()
    baseline.encode(titles[:512])

    grid = (args.sweep_batch_sizes, args.sweep_threads)
    swept = sweep(ours, titles, device, *grid, repeats=args.repeats) if args.sweep else []
    if swept:
        best = max(swept, key=lambda r: r["titles_per_s"])
        ours.batch_size, ours.tokenizer_threads = int(best["batch_size"]), int(best["tokenizer_threads"])
        ours.encode(warm)
    parts: dict[str, float] = {}
    if args.phases or device == "cuda":
        try:
            parts = phases(ours, titles, device, args.repeats)
        except Exception as exc:  # diagnostics only: the measurement below does not depend on them
            traceback.print_exc()
            errors["phases"] = repr(exc)
    if parts:
        print("phases: " + ", ".join(f"{k} {v:,}" for k, v in parts.items()), flush=True)

    ours_vecs = np.zeros((len(titles), ours.dim), np.float32)
    base_vecs = np.zeros_like(ours_vecs)
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    cpu: dict[str, float] = {"ours": 0.0, "baseline": 0.0}
    for b, rows in enumerate(blocks):
        chunk = [titles[i] for i in rows]
        for which in ("ours", "baseline") if b % 2 == 0 else ("baseline", "ours"):
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            if which == "ours":
                ours_vecs[rows] = ours.encode(chunk)
            else:
                base_vecs[rows] = baseline.encode(chunk, convert_to_numpy=True)
            sync(device)
            times[which].append(time.perf_counter() - t)
            cpu[which] += time.process_time() - c
        print(
            f"block {b + 1}/{len(blocks)}: ours {len(rows) / times['ours'][-1]:,.0f}/s, "
            f"baseline {len(rows) / times['baseline'][-1]:,.0f}/s",
            flush=True,
        )
    base_vecs /= np.maximum(np.linalg.norm(base_vecs, axis=1, keepdims=True), 1e-12)
    nonempty = np.linalg.norm(ours_vecs, axis=1) > 0
    cos = (ours_vecs[nonempty] * base_vecs[nonempty]).sum(1)
    ratios = [b / o for o, b in zip(times["ours"], times["baseline"], strict=True)]
    result = {
        "titles_per_s": round(len(titles) / sum(times["ours"]), 1),
        "baseline_titles_per_s": round(len(titles) / sum(times["baseline"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "cpu_ratio": round(cpu["baseline"] / max(cpu["ours"], 1e-9), 3),
        "cosine_agreement": round(float(cos.mean()), 5),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_p01": round(float(np.quantile(cos, 0.01)), 5),
        "block_titles_per_s": [round(len(r) / t, 1) for r, t in zip(blocks, times["ours"], strict=True)],
        "n": len(titles),
        "blocks": len(blocks),
        "encoder": ours.name,
        "precision": ours.precision,
        "batch_size": ours.batch_size,
        "tokenizer_threads": ours.tokenizer_threads if ours.overlap else 0,
        "tokenizer_backend": ours.tokenizer_backend,
        "phases": parts,
        "errors": errors,
        "sweep": swept,
        "load_and_warmup_s": round(load_s, 2),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "machine": machine(device),
    }
    print(
        f"ours {result['titles_per_s']:,.0f} titles/s vs baseline {result['baseline_titles_per_s']:,.0f} titles/s: "
        f"ratio {result['ratio']} (blocks {result['ratio_min']}..{result['ratio_max']}), "
        f"cosine mean {result['cosine_agreement']} min {result['cosine_min']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
