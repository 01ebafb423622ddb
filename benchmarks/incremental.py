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
day's graph rebuild and table append, reported apart. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=1_000_000)
    p.add_argument("--growth", type=float, default=0.01, help="the day's new pages, as a share of all pages")
    p.add_argument("--walk-steps", type=int, default=2000, help="walk.steps: the step budget of a one-pin page")
    p.add_argument("--top-k", type=int, default=20, help="walk.top_k and train.neighbours")
    p.add_argument("--text-dim", type=int, default=64, help="hashing text encoder dims")
    p.add_argument("--device", default="cpu")
    p.add_argument("--run-dir", type=Path, default=None, help="default: a temporary folder, removed at the end")
    args = p.parse_args(argv)
    log.configure(quiet=False, json_log=False)

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
        summary = update(cfg, run_dir, scratch / "day", day)
        t = summary["timings"]
        incremental = {"content": t["content_s"], "walk": t["walk_s"], "embed": t["embed_s"]}
        incremental_s = sum(incremental.values())
        c = summary["counts"]
        result: dict[str, object] = {
            "benchmark": "incremental",
            "pages": c["walk_pages"],
            "new_pages": c["ingest_new_pages"],
            "new_pins": c["ingest_new_pins"],
            "full_s": round(full_s, 2),
            "incremental_s": round(incremental_s, 2),
            "ratio": round(incremental_s / full_s, 4),
            "graph_rebuild_s": t["graph_s"],
            "ingest_append_s": t["ingest_s"],
            "full": {k: round(v, 2) for k, v in full.items()},
            "incremental": incremental,
            "full_graph_s": stage_seconds(manifests["graph"]),
            "full_pipeline_s": round(pipeline_s, 1),
            "day_generate_s": round(day_gen_s, 2),
            "walked": c["walk_walked"],
            "walked_direct": c["walk_walked_direct"],
            "walked_reverse": c["walk_walked_reverse"],
            "adopted": c["walk_adopted"],
            "embedded": c["embed_embedded"],
            "store_version": summary["store_version"],
            "walk_steps": args.walk_steps,
            "top_k": args.top_k,
            "device": args.device,
            "machine": machine(args.device),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the day's input and the cache (a kept --run-dir needs neither)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
