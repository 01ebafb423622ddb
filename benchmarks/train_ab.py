"""A/B of training variants on one upstream run: one table of their test metrics.

Every variant trains and evaluates on the *same* ingest, content, graph and walk artifacts: the
upstream run's stage folders are hard-linked (no copy, no recomputation) into ``<run-dir>-ab/<name>/``,
and the variant's ``--set`` overrides apply on top of ``--config``. The stage keys of the linked stages
are unchanged, so only train and evaluate run (evaluate embeds the test pages itself; no store is
written). By default a variant skips the trained baselines (``evaluate.baselines = []``), which a
comparison of the models does not need; ``--baselines`` keeps the config's.

A finished variant (its evaluate manifest is there) is read back, not rerun, so an interrupted A/B
resumes where it stopped. With ``--eval-slots N``, A/Bs that share one ``<run-dir>-ab`` (several started
at once on one GPU) evaluate at most N at a time, each holding a lock file there while it does (with
``--baselines`` the trained baselines train inside the evaluation, so under the slot too): on the tenth
lease, one of six variants sharing a GPU ran out of its memory while evaluating. The limit is per
``<run-dir>-ab``: A/Bs of other run directories on the same GPU do not share it.

    # on the GPU, after `linksage run walk --config configs/reddit.toml --run-dir runs/reddit`
    python3 benchmarks/train_ab.py --config configs/reddit.toml --run-dir runs/reddit \\
        --variant 'base:' \\
        --variant 'latest: train.val_split="latest"' \\
        --variant 'weights: train.dim_weights=[0.5, 0.5, 2, 1, 1]; train.val_split="latest"'

Prints one markdown table (Recall@100 per dim, MRR, the opaque / readable / unseen-domain slices at the
largest dim, the best validation step); the last line is one JSON object with every variant's figures.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from _machine import machine
from linksage import log
from linksage.config import ConfigError, load_config
from linksage.evaluate.baselines import TRAIN_UPSTREAM
from linksage.pipeline import run_stages
from linksage.rundir import RunDir

SLICES = ("opaque", "readable", "unseen_domains")
QUICK = ("evaluate.baselines=[]", "store.build_index=false")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name: a.b=1; c.d=[1, 2]"`` -> ``("name", ["a.b=1", "c.d=[1, 2]"])``; ``"name:"`` has no overrides."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--variant: expected 'name: section.key=value; ...' with a plain name, got {text!r}")
    overrides = [part.strip() for part in rest.split(";") if part.strip()]
    for o in overrides:
        if "=" not in o or "." not in o.split("=", 1)[0]:
            raise ConfigError(f"--variant {name}: expected section.key=value, got {o!r}")
    return name, overrides


def link_upstream(src: Path, dst: Path) -> None:
    """Hard-link the upstream stages' folders of ``src`` into ``dst`` (each appears whole or not at all)."""
    source = RunDir(src)
    missing = [s for s in TRAIN_UPSTREAM if source.manifest(s) is None]
    if missing:
        raise ConfigError(f"{src}: stages {missing} have not completed; run them first (linksage run walk ...)")
    dst.mkdir(parents=True, exist_ok=True)
    for stage in TRAIN_UPSTREAM:
        target = dst / stage
        if target.exists():
            continue
        tmp = dst / f".{stage}.linking"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / stage, tmp, copy_function=os.link)
        tmp.rename(target)


@contextmanager
def slot(directory: Path, slots: int, poll_s: float = 0.5) -> Iterator[int]:
    """Hold one of ``slots`` lock files (``directory/slot.<i>``) while the block runs, waiting for one to be
    free: at most ``slots`` holders at a time, across processes. ``slots = 0``: no limit (yields -1)."""
    if slots <= 0:
        yield -1
        return
    directory.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for i in range(slots):
            fd = os.open(directory / f"slot.{i}", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                yield i
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if not waited:
            log.event(f"[ab] all {slots} evaluation slots in {directory} are taken; waiting")
            waited = True
        time.sleep(poll_s)


def variant_row(name: str, overrides: list[str], run_dir: Path, seconds: float | None) -> dict[str, Any]:
    """The figures of one finished variant, from its evaluate and train manifests."""
    rd = RunDir(run_dir)
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    train = (rd.manifest("train") or {}).get("metrics", {})
    top = str(max(int(d) for d in metrics["recall@100"]))
    slices = metrics.get("slices", {})
    return {
        "variant": name,
        "overrides": overrides,
        "recall@100": metrics["recall@100"],
        "mrr": metrics["mrr"][top],
        "slices@100": {s: slices[s]["recall@100"][top] for s in SLICES if s in slices},
        "baselines@100": {b: v["recall@100"] for b, v in metrics.get("baselines", {}).items()},
        "best_step": train.get("best_step"),
        "val_recall@100": (train.get("val_recall@100") or {}).get(top),
        "seconds": round(seconds, 1) if seconds is not None else None,
        "run_dir": str(run_dir),
    }


def _cell(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"  # None: an empty slice, or a figure the run does not have


def table(rows: list[dict[str, Any]]) -> str:
    dims = sorted({int(d) for r in rows for d in r["recall@100"]})
    head = ["variant", *[f"R@100 d{d}" for d in dims], "MRR", *SLICES, "best step", "val R@100"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], *[_cell(r["recall@100"].get(str(d))) for d in dims], _cell(r["mrr"])]
        cells += [*[_cell(r["slices@100"].get(s)) for s in SLICES], str(r["best_step"]), _cell(r["val_recall@100"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True, help="the upstream run (ingest..walk completed)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--variant", action="append", default=[], required=True, help="'name: a.b=1; c.d=2'")
    p.add_argument("--baselines", action="store_true", help="keep the config's trained baselines and indices")
    p.add_argument("--ab-dir", type=Path, default=None, help="where the variants go (default <run-dir>-ab)")
    p.add_argument(
        "--eval-slots", type=int, default=0, help="evaluate at most this many variants at once across A/Bs (0: any)"
    )
    args = p.parse_args(argv)
    log.configure(quiet=False, json_log=False)
    variants = [parse_variant(v) for v in args.variant]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"--variant: names must be distinct, got {names}")
    ab_dir = args.ab_dir or args.run_dir.with_name(args.run_dir.name + "-ab")
    extra = [] if args.baselines else list(QUICK)
    configs = {}  # every variant's config is checked before the first one trains: a typo fails at once
    for name, overrides in variants:
        try:
            configs[name] = load_config(args.config, [*args.overrides, *extra, *overrides])
        except ConfigError as exc:
            raise ConfigError(f"--variant {name}: {exc}") from exc
    rows = []
    for name, overrides in variants:
        cfg = configs[name]
        run_dir = ab_dir / name
        seconds = None
        if RunDir(run_dir).manifest("evaluate") is None:
            link_upstream(args.run_dir, run_dir)
            t0 = time.perf_counter()
            log.event(f"[ab] {name}", overrides=" ; ".join(overrides) or "(none)")
            run_stages(cfg, run_dir, ["train"])  # no limit
            waiting = time.perf_counter()
            with slot(ab_dir / ".eval-slots", args.eval_slots):
                waited = time.perf_counter() - waiting
                if waited > 1:
                    log.event(f"[ab] {name} waited {waited:.0f} s for an evaluation slot", waited_s=round(waited, 1))
                run_stages(cfg, run_dir, ["evaluate"])
            seconds = time.perf_counter() - t0 - waited  # the variant's own work, not its wait
        rows.append(variant_row(name, overrides, run_dir, seconds))
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    result = {
        "benchmark": "train_ab",
        "variants": rows,
        "machine": machine("cuda" if torch.cuda.is_available() else None),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
