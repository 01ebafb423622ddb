"""Text encoding throughput: our MiniLM path against a plain ``SentenceTransformer.encode``, same titles.

Both encode the same Reddit post titles (``link_posts/part-1.parquet``, then part-0 when ``--n`` asks
for more) in this process:

- baseline: ``SentenceTransformer(<all-MiniLM-L6-v2>, device=...).encode(titles)`` with its defaults
            (batch size 32, fp32);
- ours:     ``linksage.content.text.create_text_encoder`` as the content stage builds it (length
            bucketing, one tokenizer pass, inference mode; fp32 on CPU, fp16 and large batches on
            CUDA, unless ``--precision`` says otherwise, e.g. ``int8`` on CPU).

The titles are cut into ``--blocks`` blocks; each block is encoded by both, alternating which goes
first, so a shared machine's load falls on both alike. ``ratio`` is the median over blocks of the
per-block speed ratio; the throughputs are totals over all blocks. ``cosine_agreement`` is the mean
cosine between our vectors and the baseline's fp32 vectors (``cosine_min`` the worst title).

    .venv/bin/python benchmarks/text_encode.py                           # CPU, 20,000 titles
    .venv/bin/python benchmarks/text_encode.py --precision int8          # the opt-in int8 CPU path
    .venv/bin/python benchmarks/text_encode.py --device cuda --n 200000  # GPU (fp16)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from _machine import machine
from linksage.config.content import ContentConfig
from linksage.content.text import create_text_encoder, minilm_path, resolve_device

POSTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "reddit-top-2.5m" / "link_posts"


def load_titles(posts: Path, n: int) -> list[str]:
    titles: list[str] = []
    for part in ("part-1.parquet", "part-0.parquet"):
        if len(titles) >= n:
            break
        titles += pq.read_table(posts / part, columns=["title"]).column("title").to_pylist()[: n - len(titles)]
    return [t or "" for t in titles]


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--posts", type=Path, default=POSTS, help="folder with part-1.parquet (and part-0.parquet)")
    p.add_argument("--n", type=int, default=20_000, help="titles to encode")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"])
    p.add_argument("--batch-size", type=int, default=0, help="our batch size (0 = the content config default)")
    p.add_argument("--blocks", type=int, default=8, help="alternating timed blocks; the ratio is their median")
    args = p.parse_args(argv)
    if not (args.posts / "part-1.parquet").exists():
        print(f"{args.posts}/part-1.parquet is missing: the benchmark needs ../shared/data", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    device = resolve_device(args.device)
    titles = load_titles(args.posts, args.n)
    cfg = replace(ContentConfig(), text_precision=args.precision, device=device)
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size, gpu_batch_size=args.batch_size)
    t0 = time.perf_counter()
    ours = create_text_encoder(cfg, device)
    ours.encode(titles[:512])  # load, calibrate (int8), warm up
    load_s = time.perf_counter() - t0
    baseline = SentenceTransformer(str(minilm_path()), device=device, local_files_only=True)
    baseline.encode(titles[:512])

    blocks = np.array_split(np.arange(len(titles)), args.blocks)
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
        "n": len(titles),
        "blocks": len(blocks),
        "encoder": ours.name,
        "load_and_warmup_s": round(load_s, 2),
        "device": device,
        "torch_threads": torch.get_num_threads(),
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
