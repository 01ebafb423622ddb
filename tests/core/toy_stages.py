"""Two tiny real stages for testing the runner: `first` writes a number, `second` doubles it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from linksage.config import Config
from linksage.pipeline import Stage, StageContext, StageResult

CALLS: list[str] = []


def external_files(cfg: Config) -> list[Path]:
    src = os.environ.get("TOY_INPUT")
    return [Path(src)] if src else []


def first(ctx: StageContext) -> StageResult:
    CALLS.append("first")
    value = ctx.config.walk.top_k
    src = os.environ.get("TOY_INPUT")
    if src:
        value += int(Path(src).read_text())
    (ctx.out / "value.txt").write_text(str(value))
    return StageResult(counts={"value": value})


def second(ctx: StageContext) -> StageResult:
    CALLS.append("second")
    value = int((ctx.input_dir("first") / "value.txt").read_text())
    (ctx.out / "partial.txt").write_text("half-written")
    if os.environ.get("TOY_SLEEP"):
        time.sleep(float(os.environ["TOY_SLEEP"]))  # the test kills the process here
    (ctx.out / "value.txt").write_text(str(2 * value))
    return StageResult(counts={"value": 2 * value})


TOY_STAGES = (
    Stage("first", "toy_stages:first", sections=("walk",), external="toy_stages:external_files"),
    Stage("second", "toy_stages:second", sections=("train",), upstream=("first",)),
)
