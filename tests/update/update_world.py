"""A small synthetic run directory (every stage up to embed) and its next days, for the update tests.

The template run is built once per test session; each test copies it (a run directory is self-contained
but for the content cache beside it, which a copy shares harmlessly: it is keyed by content hash).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from linksage.config import Config, load_config
from linksage.ingest.synthetic import generate_day
from linksage.pipeline import run_stages

OVERRIDES = [
    'ingest.source="synthetic"',
    "ingest.synthetic.n_links=3000",
    'content.text_encoder="hashing"',
    "content.hashing_dim=32",
    "walk.steps=300",
    "walk.top_k=8",
    "walk.threads=1",
    "train.neighbours=8",
    "train.dims=[8,16,32]",
    "train.d_model=32",
    "train.layers=1",
    "train.heads=2",
    "train.steps=10",
    "train.batch_size=64",
    "train.random_negatives=64",
    "train.warmup_steps=2",
    "train.eval_every=0",
    "train.eval_pages=100",
    "train.eval_pool=0",
    "train.threads=1",
    'train.device="cpu"',
    'embed.device="cpu"',
    "embed.threads=1",
]
DAY = "2013-07-01"  # the synthetic world ends on 2013-07-01: its first later day
NEXT_DAY = "2013-07-02"


def config(extra: list[str] | tuple[str, ...] = ()) -> Config:
    return load_config(None, [*OVERRIDES, *extra])


def build_template(root: Path) -> Path:
    run = root / "run"
    run_stages(config(), run, ["embed"])
    return run


def copy_run(template: Path, dst: Path) -> Path:
    """A copy of the template run directory (its store included) at ``dst``."""
    shutil.copytree(template, dst, symlinks=True)
    return dst


def day_input(folder: Path, day: str = DAY, growth: float = 0.02) -> Path:
    generate_day(config().ingest.synthetic, day, folder, growth)
    return folder
