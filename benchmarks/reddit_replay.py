"""The Reddit replay: a run trained on posts before a date, then ``linksage update`` day by day after it.

For each day of ``[--start, --end)`` the day's posts (``created_utc`` within the day, from ``--posts``,
split once into one Parquet file per day) are applied with ``update``; then the day's *new* pages (first
linked that day) are scored: Recall@{10,50,100} and MRR of retrieving each new page's pins (its
positives) among **all** pins of the run so far, at every Matryoshka dim, with the exact metrics of the
evaluate stage (``linksage.evaluate.metrics``), from the embeddings the update stored. Also per day: the
update's time and its breakdown, pages walked and embedded.

The run directory must have been built with ``--config``/``--set`` (the update refuses another config);
when it has no ``embed`` stage yet, the pipeline is run up to ``embed`` first (the GPU trains it there).

    # on the GPU (configs/reddit.toml: train on posts before 2013-04-01, replay April and May 2013)
    .venv/bin/python benchmarks/reddit_replay.py --config configs/reddit.toml --run-dir runs/reddit-replay \\
        --set ingest.reddit.end=2013-04-01 --start 2013-04-01 --end 2013-06-01 --device cuda

Writes ``<out>/replay.csv`` (one row per day) and ``<out>/replay.png``; the last line is one JSON object
(mean Recall@100 of new pages at the largest dim, seconds per day, days, machine).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine
from linksage import log
from linksage.config import Config, load_config
from linksage.evaluate.metrics import mean_metrics, per_query_metrics, rank_positives
from linksage.evaluate.queries import positives_in_pool, query_pins
from linksage.pipeline import run_stages
from linksage.rundir import RunDir
from linksage.search.indices import store_path
from linksage.store.fingerprint import page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train.infer import load_model
from linksage.update.run import update

KS = (10, 50, 100)


def split_days(posts: Path, start: str, end: str, out: Path) -> list[tuple[str, Path]]:
    """One Parquet file of posts per UTC day in ``[start, end)`` (reused when already there)."""
    import polars as pl

    days = []
    d, stop = datetime.date.fromisoformat(start), datetime.date.fromisoformat(end)
    while d < stop:
        days.append(d.isoformat())
        d += datetime.timedelta(days=1)
    files = [(day, out / f"{day}.parquet") for day in days]
    if all(f.exists() for _, f in files):
        return files
    out.mkdir(parents=True, exist_ok=True)
    lo = int(datetime.datetime.fromisoformat(start).replace(tzinfo=datetime.UTC).timestamp())
    hi = int(datetime.datetime.fromisoformat(end).replace(tzinfo=datetime.UTC).timestamp())
    source = str(posts / "*.parquet") if posts.is_dir() else str(posts)
    frame = pl.scan_parquet(source).filter((pl.col("created_utc") >= lo) & (pl.col("created_utc") < hi)).collect()
    frame = frame.with_columns(day=(pl.col("created_utc") // 86_400))
    for day, path in files:
        key = int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC).timestamp()) // 86_400
        part = frame.filter(pl.col("day") == key).drop("day")
        tmp = path.with_suffix(".tmp")
        part.write_parquet(tmp)
        tmp.replace(path)
    return files


def new_page_metrics(cfg: Config, run_dir: Path, device: str) -> dict[str, Any]:
    """Recall@k and MRR of the day's new pages (ingest/update.json) against every pin, per Matryoshka dim."""
    import pyarrow.parquet as pq

    sizes = json.loads((run_dir / "ingest" / "update.json").read_text())
    pages = np.arange(sizes["old"]["pages"], sizes["new"]["pages"], dtype=np.int64)
    indptr = np.load(run_dir / "graph" / "page__pin.indptr.npy", mmap_mode="r")
    indices = np.load(run_dir / "graph" / "page__pin.indices.npy", mmap_mode="r")
    pages = pages[np.asarray(indptr[pages + 1] - indptr[pages]) > 0]  # a page needs a positive pin
    out: dict[str, Any] = {"new_pages": int(sizes["new"]["pages"] - sizes["old"]["pages"]), "queries": len(pages)}
    if len(pages) == 0:
        return out
    urls = pq.read_table(run_dir / "ingest" / "pages.parquet", columns=["url"])["url"].combine_chunks()
    ids = page_ids(urls.take(pages))
    store = EmbeddingStore.open(store_path(run_dir, cfg.store))
    table = store.get(ids.tolist())
    row = {int(p): i for i, p in enumerate(table["page_id"].to_pylist())}
    queries = embedding_matrix(table["embedding"], store.dim)[[row[int(p)] for p in ids]]
    model = load_model(run_dir / "train")
    pool = model.pin_vectors(np.load(run_dir / "content" / "pin_target.npy", mmap_mode="r"))  # every pin
    q_indptr, pins = query_pins(pages, np.asarray(indptr), np.asarray(indices))
    positives = positives_in_pool(q_indptr, pins, np.arange(len(pool), dtype=np.int64))
    ranks = rank_positives(queries, pool, positives, model.dims, max_k=max(KS), device=device)
    for dim in model.dims:
        means = mean_metrics(per_query_metrics(ranks[dim], positives, KS))
        out.update({f"{name}_d{dim}": round(value, 4) for name, value in means.items()})
    out["pins"] = len(pool)
    return out


FIELDS: tuple[str, ...] = ("day", "update_s", "ingest_s", "content_s", "graph_s", "walk_s", "embed_s", "index_s")
FIELDS += ("posts", "new_pins", "new_pages", "queries", "pins", "walked", "embedded", "store_version")


def columns(dims: tuple[int, ...]) -> list[str]:
    return [*FIELDS, *(f"{m}_d{d}" for d in dims for m in ("recall@10", "recall@50", "recall@100", "mrr"))]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an existing replay CSV, numbers parsed (empty cells dropped)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: (v if k == "day" else float(v)) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def append_row(path: Path, row: dict[str, Any], dims: tuple[int, ...]) -> None:
    """One day's row, appended (the header first, for a new file): a killed replay keeps its finished days."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(dims), extrasaction="ignore", restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()


def plot(rows: list[dict[str, Any]], dims: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [r["day"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for dim in dims:
        ax.plot(days, [r.get(f"recall@100_d{dim}", np.nan) for r in rows], marker=".", label=f"Recall@100, {dim} dims")
    ax.set_ylabel("Recall@100 of the day's new pages")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    twin = ax.twinx()
    twin.bar(days, [r["update_s"] for r in rows], alpha=0.2, color="gray", label="update seconds")
    twin.set_ylabel("seconds per day (update)")
    ax.set_zorder(twin.get_zorder() + 1)  # the recall lines over the time bars
    ax.patch.set_visible(False)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Reddit replay: one linksage update per day")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--config", type=Path, default=Path("configs/reddit.toml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--posts", type=Path, default=Path("../shared/data/reddit-top-2.5m/link_posts"))
    p.add_argument("--start", default="2013-04-01", help="first replayed day")
    p.add_argument("--end", default="2013-06-01", help="day after the last replayed one")
    p.add_argument("--days", type=int, default=0, help="replay only the first N days (0 = all)")
    p.add_argument("--out", type=Path, default=None, help="CSV/PNG folder (default <run-dir>/replay)")
    p.add_argument("--device", default="cpu", help="device of the metric computation")
    args = p.parse_args(argv)
    log.configure(quiet=False, json_log=False)
    cfg = load_config(args.config, args.overrides)
    out = args.out or args.run_dir / "replay"
    out.mkdir(parents=True, exist_ok=True)
    if RunDir(args.run_dir).manifest("embed") is None:
        log.event("[replay] the run has no embed stage yet: running the pipeline up to embed")
        run_stages(cfg, args.run_dir, ["embed"])

    files = split_days(args.posts, args.start, args.end, out / "days")
    if args.days:
        files = files[: args.days]
    csv_path = out / "replay.csv"
    rows = read_rows(csv_path)  # days replayed by an earlier (interrupted) invocation are kept, not redone
    done = {r["day"] for r in rows}
    dims = load_model(args.run_dir / "train").dims
    replayed = False
    for day, path in files:
        if day in done:
            continue
        t0 = time.perf_counter()
        summary = update(cfg, args.run_dir, path, day, input_format="reddit")
        update_s = time.perf_counter() - t0
        metrics = new_page_metrics(cfg, args.run_dir, args.device)
        c = summary["counts"]
        row = {
            "day": day,
            "update_s": round(update_s, 2),
            **{k: v for k, v in summary["timings"].items()},
            "posts": c.get("ingest_day_posts_read", 0),
            "new_pins": c.get("ingest_new_pins", 0),
            "walked": c.get("walk_walked", 0),
            "embedded": c.get("embed_embedded", 0),
            "store_version": summary["store_version"],
            **metrics,
        }
        rows.append(row)
        append_row(csv_path, row, dims)
        plot(rows, dims, out / "replay.png")  # after every day: a run stopped midway still has its plot
        replayed = True
        log.event(f"[replay] {day}", **{k: row[k] for k in ("update_s", "new_pages", "queries", "embedded")})
    if rows and not replayed:  # every day was replayed by an earlier invocation: plot them again
        plot(rows, dims, out / "replay.png")
    top = f"recall@100_d{dims[-1]}"
    scored = [r for r in rows if top in r]
    weights = np.array([r["queries"] for r in scored], float)
    result = {
        "benchmark": "reddit_replay",
        "days": len(rows),
        "first_day": rows[0]["day"] if rows else None,
        "last_day": rows[-1]["day"] if rows else None,
        "new_pages": int(sum(r["new_pages"] for r in rows)),
        "queries": int(weights.sum()),
        "recall@100": round(float(np.average([r[top] for r in scored], weights=weights)), 4)
        if scored and weights.sum() > 0
        else None,
        "recall@100_by_dim": {
            d: round(float(np.average([r[f"recall@100_d{d}"] for r in scored], weights=weights)), 4) for d in dims
        }
        if scored and weights.sum() > 0
        else {},
        "update_s_per_day": round(float(np.mean([r["update_s"] for r in rows])), 2) if rows else None,
        "csv": str(csv_path),
        "png": str(out / "replay.png"),
        "machine": machine(args.device),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
