"""ANN search (linksage.search.ann) against exact faiss IndexFlatIP, in the same process.

Data: seeded unit vectors that look like real embeddings rather than uniform noise: 1,000 clusters
(100 topics x 10 sub-topics) with Zipf-like sizes, each point = its cluster centre + a rank-16
within-cluster spread (decaying scales) + small isotropic noise, L2-normalised. Queries are held-out
points from the same distribution.

Measured: recall@k of the index against exact search; single-query latency (one query per call,
median and p99 over all queries and repeats) of both; batched throughput of both; index build time.

    .venv/bin/python benchmarks/ann.py                 # 1M x 256, top-100 (about 3-5 minutes on 2 cores)
    .venv/bin/python benchmarks/ann.py --n 100000      # quick look

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from _machine import machine
from linksage.config.store import IndexConfig
from linksage.search.ann import AnnIndex, normalise


def clustered_vectors(
    n: int, dim: int, seed: int, topics: int = 100, subtopics: int = 10, rank: int = 16
) -> np.ndarray:
    """(n, dim) float32 unit rows: a mixture of low-rank Gaussian clusters on the sphere (see docstring)."""
    rng = np.random.default_rng(seed)
    topic = normalise(rng.standard_normal((topics, dim)))
    k = topics * subtopics
    centre = normalise(np.repeat(topic, subtopics, axis=0) + 0.8 * rng.standard_normal((k, dim)) / np.sqrt(dim))
    p = 1.0 / np.arange(1, k + 1) ** 0.8
    label = rng.choice(k, size=n, p=p / p.sum())
    order = np.argsort(label, kind="stable")
    counts = np.bincount(label, minlength=k)
    scales = (1.2 / np.sqrt(np.arange(1, rank + 1))).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    start = 0
    for c in range(k):
        m = counts[c]
        basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(dim)  # (r, d) cluster's spread
        z = rng.standard_normal((m, rank)).astype(np.float32) * scales  # (m, r)
        iso = 0.25 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        out[order[start : start + m]] = centre[c] + z @ basis + iso
        start += m
    return normalise(out)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth|."""
    hits = [len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def single_latencies(search, queries: np.ndarray, repeats: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Seconds per call of ``search(q[None])`` for every query, ``repeats`` passes."""
    out = []
    for _ in range(repeats):
        for q in queries:
            t0 = time.perf_counter()
            search(q[None])
            out.append(time.perf_counter() - t0)
    return np.asarray(out)


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--queries", type=int, default=300, help="single-query latency and recall queries")
    ap.add_argument("--exact-latency-queries", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2_000, help="queries of the batched throughput test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kind", default="auto", choices=["auto", "ivfpq", "hnsw", "flat"])
    ap.add_argument("--nprobe", type=int, default=IndexConfig.nprobe)
    ap.add_argument("--rerank", type=int, default=IndexConfig.rerank)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import faiss

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    data = clustered_vectors(args.n + args.batch, args.dim, args.seed)
    base, queries = data[: args.n], data[args.n :]
    print(f"data: {args.n:,} x {args.dim} + {len(queries):,} queries in {time.perf_counter() - t0:.1f}s", flush=True)

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(base)
    t0 = time.perf_counter()
    _, truth = flat.search(queries[: args.queries], args.k)
    exact_batch_qps = args.queries / (time.perf_counter() - t0)
    faiss.omp_set_num_threads(1)  # one query per call: OpenMP start-up on a shared machine costs more than it gives
    exact_lat = single_latencies(lambda q: flat.search(q, args.k), queries[: args.exact_latency_queries], 1)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    print(f"exact: batched {exact_batch_qps:,.0f} q/s, single median {np.median(exact_lat) * 1e3:.1f} ms", flush=True)

    cfg = IndexConfig(kind=args.kind, nprobe=args.nprobe, rerank=args.rerank, seed=args.seed)
    t0 = time.perf_counter()
    index = AnnIndex.build(base, np.arange(args.n, dtype=np.int64), cfg)
    build_s = time.perf_counter() - t0
    print(f"build ({index.params.kind}): {build_s:.1f}s", flush=True)

    q = queries[: args.queries]
    _, found = index.search(q, args.k)
    recall = recall_at_k(found, truth)
    lat = single_latencies(lambda x: index.search(x, args.k), q, args.repeats)
    t0 = time.perf_counter()
    index.search(queries, args.k)
    ann_batch_qps = len(queries) / (time.perf_counter() - t0)

    result: dict[str, object] = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "index": index.params.kind,
        "params": {"nprobe": index.params.nprobe, "rerank": index.params.rerank},
        "recall_at_100" if args.k == 100 else f"recall_at_{args.k}": round(recall, 4),
        "median_latency_ms": round(float(np.median(lat)) * 1e3, 3),
        "p99_latency_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "exact_median_latency_ms": round(float(np.median(exact_lat)) * 1e3, 3),
        "ratio": round(float(np.median(exact_lat) / np.median(lat)), 1),
        "batched_qps": round(ann_batch_qps),
        "exact_batched_qps": round(exact_batch_qps),
        "build_s": round(build_s, 1),
        # other processes share the cores: the 1-minute load average before and after the run says how much
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": machine(),
    }
    print(
        f"{index.params.kind}: recall@{args.k} {recall:.4f}, single median {result['median_latency_ms']} ms "
        f"(p99 {result['p99_latency_ms']} ms), exact {result['exact_median_latency_ms']} ms -> "
        f"{result['ratio']}x; batched {ann_batch_qps:,.0f} q/s vs exact {exact_batch_qps:,.0f} q/s",
        flush=True,
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
