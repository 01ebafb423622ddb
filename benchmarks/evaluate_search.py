"""Benchmark: the evaluate stage's exact search (all Matryoshka dims, exact MRR) against faiss IndexFlatIP.

    .venv/bin/python tests/evaluate/bench_evaluate_search.py [--pool 200000] [--queries 1000] [--device cpu]

Both run in this process on the same data; the baseline is faiss exact top-100 at the largest dim only
(faiss on CPU; torch matmul + top-k on CUDA with --device cuda). Medians of --repeats runs. The last line
printed is one JSON object: search_s, faiss_s, ratio_vs_faiss (ours / faiss for one dim), per_dim_ratio
(ours per dim / faiss), queries_per_s (per dim, ours), machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from _machine import machine
from linksage.evaluate.metrics import Positives, rank_positives


def _faiss_top100(queries: np.ndarray, pool: np.ndarray, device: str) -> None:
    if device.startswith("cuda"):
        q = torch.nn.functional.normalize(torch.from_numpy(queries).to(device), dim=1)
        p = torch.nn.functional.normalize(torch.from_numpy(pool).to(device), dim=1)
        for c0 in range(0, len(p), 65_536):
            torch.topk(q @ p[c0 : c0 + 65_536].T, 100, dim=1)
        torch.cuda.synchronize()
        return
    import faiss

    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool / np.linalg.norm(pool, axis=1, keepdims=True))
    index.search(queries / np.linalg.norm(queries, axis=1, keepdims=True), 100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((args.pool, args.dim)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    pos = Positives.from_lists([rng.choice(args.pool, 2, replace=False) for _ in range(args.queries)])
    dims = (*[d for d in (16, 32, 64, 128, 256) if d < args.dim], args.dim)
    ours, base = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        _faiss_top100(queries, pool, args.device)
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        rank_positives(queries, pool, pos, dims, max_k=100, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        ours.append(time.perf_counter() - t)
    search_s, faiss_s = statistics.median(ours), statistics.median(base)
    print(f"pool {args.pool:,} x {args.dim}, {args.queries:,} queries, dims {dims}")
    print(f"ours {search_s:.2f}s (all dims), faiss {faiss_s:.2f}s (dim {args.dim} only)")
    print(
        json.dumps(
            {
                "search_s": round(search_s, 3),
                "faiss_s": round(faiss_s, 3),
                "ratio_vs_faiss": round(search_s / faiss_s, 3),
                "per_dim_ratio": round(search_s / len(dims) / faiss_s, 3),
                "queries_per_s": round(args.queries * len(dims) / search_s, 1),
                "machine": machine(args.device),
            }
        )
    )


if __name__ == "__main__":
    main()
