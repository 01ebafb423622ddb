"""An incremental day against a full run, same process: walk + content + embed + merge, graph rebuild apart.

Builds a synthetic world (the ``synthetic`` ingest adapter, ``--pages`` pages), runs the pipeline up to
``embed`` once (a small model trained for a few steps: inference cost, not quality, is measured), then
generates the next day (``--growth`` new pages, their pins and links, and more pins onto old pages:
``linksage synthetic-day``) and applies it with ``linksage update``. Both runs use the same config:
hashing text encoder, the default walk (2,000 steps, top-20), the store without ANN indices (an index build is neither
in the full nor in the incremental figure).

    .venv/bin/python benchmarks/incremental.py                        # 1M pages, 2-core CPU
    .venv/bin/python benchmarks/incremental.py --pages 20000          # a quick look
    .venv/bin/python benchmarks/incremental.py --device cuda          # model on the GPU

``full_s`` = the full run's content + walk + embed stages (plus the merge of the content cache's shards
that the full run leaves behind, paid by whoever opens the cache next); ``incremental_s`` = the day's content + walk +
embed (fingerprints, inference and the store merge); ``graph_rebuild_s`` and ``ingest_append_s`` are the
day's graph rebuild and table append, reported apart. The day is applied ``--repeats`` times in this process,
each time to a fresh copy of the full run's directory and content cache (copied outside the timings; the last
time to the run directory itself): ``incremental_s``, ``ratio`` and the day's other figures are the medians,
``incremental_runs`` lists every repeat. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine
from linksage import log
from linksage.config import load_config
from linksage.content.cache import VectorCache
from linksage.content.text import create_text_encoder
from linksage.ingest.synthetic import generate_day
from linksage.pipeline import run_stages
from linksage.update.run import update


def overrides(args: argparse.Namespace) -> list[str]:
    pins = round(args.pages * 2.5)  # ingest.synthetic.pins_per_page = 2.5
    return [
        'ingest.source="synthetic"',
        f"ingest.synthetic.n_links={round(pins * 1.02)}",  # 2% duplicate link rows on top of one per pin
        'content.text_encoder="hashing"',
        f"content.hashing_dim={args.text_dim}",
        f"walk.steps={args.walk_steps}",
        f"walk.top_k={args.top_k}",
        f"train.neighbours={args.top_k}",
        "train.dims=[16,32,64]",
        "train.d_model=32",
        "train.layers=1",
        "train.heads=2",
        "train.steps=20",
        "train.batch_size=256",
        "train.random_negatives=256",
        "train.warmup_steps=2",
        "train.eval_every=0",
        "train.eval_pages=500",
        "train.eval_pool=0",
        "train.threads=1",
        f'train.device="{args.device}"',
        f'embed.device="{args.device}"',
        "store.build_index=false",
    ]


def stage_seconds(manifest: dict[str, object]) -> float:
    timings = manifest["timings"]
    assert isinstance(timings, dict)
    return float(timings["total_s"])


def _median(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3)


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=1_000_000)
    p.add_argument("--growth", type=float, default=0.01, help="the day's new pages, as a share of all pages")
    p.add_argument("--walk-steps", type=int, default=2000, help="walk.steps: the step budget of a one-pin page")
    p.add_argument("--top-k", type=int, default=20, help="walk.top_k and train.neighbours")
    p.add_argument("--text-dim", type=int, default=64, help="hashing text encoder dims")
    p.add_argument("--device", default="cpu")
    p.add_argument("--run-dir", type=Path, default=None, help="default: a temporary folder, removed at the end")
    p.add_argument("--repeats", type=int, default=3, help="days applied (to fresh copies); medians reported")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats: at least 1")
    log.configure(quiet=False, json_log=False)
    machine_at_start = machine(args.device)

    scratch = Path(tempfile.mkdtemp(prefix="linksage-incremental-"))
    run_dir = args.run_dir or scratch / "run"
    if run_dir.exists():
        sys.exit(f"{run_dir} exists: the benchmark times a full run from scratch")
    # a fresh content cache: a warm one would make the full run's encoding look cheaper than it is
    cfg = load_config(None, [*overrides(args), f'content.cache_dir="{scratch / "cache"}"'])
    try:
        t0 = time.perf_counter()
        manifests = run_stages(cfg, run_dir, ["embed"])
        pipeline_s = time.perf_counter() - t0
        full = {name: stage_seconds(manifests[name]) for name in ("content", "walk", "embed")}
        # The full run leaves its content cache in one shard per chunk; whoever opens it next merges them
        # (O(cache)). That bill is the full run's, so it is paid and timed here, not by the day.
        t0 = time.perf_counter()
        VectorCache.open(scratch / "cache", f"text:{create_text_encoder(cfg.content).name}")
        full["content_cache_merge"] = time.perf_counter() - t0
        full_s = sum(full.values())

        day = cfg.ingest.synthetic.end[:10]
        t0 = time.perf_counter()
        generate_day(cfg.ingest.synthetic, day, scratch / "day", args.growth)
        day_gen_s = time.perf_counter() - t0
        cache, cache_full = scratch / "cache", scratch / "cache-full"
        shutil.copytree(cache, cache_full)
        days: list[dict[str, Any]] = []
        for i in range(args.repeats):
            last = i == args.repeats - 1
            target = run_dir if last else scratch / f"day-{i}" / "run"
            if not last:
                shutil.copytree(run_dir, target, symlinks=True)
            if i:  # the cache as the full run left it (the config names its path, so it is restored in place)
                shutil.rmtree(cache)
                shutil.copytree(cache_full, cache)
            summary = update(cfg, target, scratch / "day", day)
            days.append(summary)
            if not last:
                shutil.rmtree(target.parent)
            log.event("[benchmark] day applied", repeat=i + 1, of=args.repeats, timings=summary["timings"])
        runs = [{k: d["timings"][f"{k}_s"] for k in ("content", "walk", "embed", "graph", "ingest")} for d in days]
        totals = [r["content"] + r["walk"] + r["embed"] for r in runs]
        incremental = {k: _median([r[k] for r in runs]) for k in ("content", "walk", "embed")}
        incremental_s = _median(totals)
        c = days[-1]["counts"]
        result: dict[str, object] = {
            "benchmark": "incremental",
            "pages": c["walk_pages"],
            "new_pages": c["ingest_new_pages"],
            "new_pins": c["ingest_new_pins"],
            "full_s": round(full_s, 2),
            "incremental_s": round(incremental_s, 2),
            "ratio": round(incremental_s / full_s, 4),
            "graph_rebuild_s": _median([r["graph"] for r in runs]),
            "ingest_append_s": _median([r["ingest"] for r in runs]),
            "repeats": args.repeats,
            "incremental_runs": [round(t, 2) for t in totals],
            "ratios": [round(t / full_s, 4) for t in totals],
            "full": {k: round(v, 2) for k, v in full.items()},
            "incremental": incremental,
            "day_steps": days[-1]["timings"],
            "full_graph_s": stage_seconds(manifests["graph"]),
            "full_pipeline_s": round(pipeline_s, 1),
            "day_generate_s": round(day_gen_s, 2),
            "walked": c["walk_walked"],
            "walked_direct": c["walk_walked_direct"],
            "walked_reverse": c["walk_walked_reverse"],
            "adopted": c["walk_adopted"],
            "checked": c.get("embed_checked"),
            "embedded": c["embed_embedded"],
            "store_version": days[-1]["store_version"],
            "walk_steps": args.walk_steps,
            "top_k": args.top_k,
            "device": args.device,
            "machine_at_start": machine_at_start,
            "machine": machine(args.device),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the day's input and the cache (a kept --run-dir needs neither)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
