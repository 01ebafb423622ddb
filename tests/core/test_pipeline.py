"""The stage runner: skipping, forcing, upstream staleness, atomic sealing, and crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import toy_stages

from linksage import pipeline
from linksage.config import load_config
from linksage.rundir import RunDir

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setattr(pipeline, "STAGES", toy_stages.TOY_STAGES)
    monkeypatch.delenv("TOY_INPUT", raising=False)
    monkeypatch.delenv("TOY_SLEEP", raising=False)
    toy_stages.CALLS.clear()
    yield


def test_runs_upstream_then_skips_when_fresh(tmp_path: Path) -> None:
    cfg = load_config(None, ["walk.top_k=3"])
    manifests = pipeline.run_stages(cfg, tmp_path, ["second"])
    assert toy_stages.CALLS == ["first", "second"]
    assert manifests["second"]["counts"] == {"value": 6}
    assert (tmp_path / "second" / "value.txt").read_text() == "6"
    pipeline.run_stages(cfg, tmp_path, ["second"])
    assert toy_stages.CALLS == ["first", "second"]  # nothing reran


def test_manifest_records_config_and_timings(tmp_path: Path) -> None:
    pipeline.run_stages(load_config(), tmp_path, ["first"])
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert manifest["config"]["walk"]["top_k"] == load_config().walk.top_k
    assert manifest["timings"]["total_s"] >= 0
    assert len(manifest["key"]) == 16


def test_config_change_reruns_only_affected_stages(tmp_path: Path) -> None:
    pipeline.run_stages(load_config(), tmp_path, ["second"])
    toy_stages.CALLS.clear()
    pipeline.run_stages(load_config(None, ["train.steps=5"]), tmp_path, ["second"])
    assert toy_stages.CALLS == ["second"]
    toy_stages.CALLS.clear()
    pipeline.run_stages(load_config(None, ["train.steps=5", "walk.top_k=4"]), tmp_path, ["second"])
    assert toy_stages.CALLS == ["first", "second"]  # upstream key changed, so second is stale too


def test_external_input_change_reruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "input.txt"
    src.write_text("1")
    monkeypatch.setenv("TOY_INPUT", str(src))
    run = tmp_path / "run"
    pipeline.run_stages(load_config(), run, ["first"])
    pipeline.run_stages(load_config(), run, ["first"])
    assert toy_stages.CALLS == ["first"]
    src.write_text("10")
    os.utime(src, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    pipeline.run_stages(load_config(), run, ["first"])
    assert toy_stages.CALLS == ["first", "first"]


def test_force_reruns_named_stage_only(tmp_path: Path) -> None:
    pipeline.run_stages(load_config(), tmp_path, ["second"])
    toy_stages.CALLS.clear()
    pipeline.run_stages(load_config(), tmp_path, ["second"], force=True)
    assert toy_stages.CALLS == ["second"]


def test_failed_stage_leaves_earlier_results_and_no_half_folder(tmp_path: Path) -> None:
    pipeline.run_stages(load_config(), tmp_path, ["second"])
    before = (tmp_path / "second" / "value.txt").read_text()

    def boom(ctx: pipeline.StageContext) -> pipeline.StageResult:
        (ctx.out / "value.txt").write_text("garbage")
        raise RuntimeError("stage died")

    monkey_stage = pipeline.Stage("second", "toy_stages:second", sections=("train",), upstream=("first",))
    object.__setattr__(monkey_stage, "load", lambda: boom)
    stages = (toy_stages.TOY_STAGES[0], monkey_stage)
    original = pipeline.STAGES
    pipeline.STAGES = stages  # type: ignore[misc]
    try:
        with pytest.raises(RuntimeError, match="stage died"):
            pipeline.run_stages(load_config(), tmp_path, ["second"], force=True)
    finally:
        pipeline.STAGES = original  # type: ignore[misc]
    assert (tmp_path / "second" / "value.txt").read_text() == before  # the sealed folder is untouched
    assert RunDir(tmp_path).manifest("first") is not None


def test_unknown_stage_is_named() -> None:
    with pytest.raises(Exception, match="unknown stage 'nope'; stages are: first, second"):
        pipeline.get_stage("nope")


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import toy_stages
from linksage import pipeline
from linksage.config import load_config
pipeline.STAGES = toy_stages.TOY_STAGES
pipeline.run_stages(load_config(), {run!r}, ["second"])
"""


def test_sigkill_mid_stage_then_rerun_finishes_with_same_result(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = SCRIPT.format(here=str(HERE), run=str(run))
    env = {**os.environ, "TOY_SLEEP": "30"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while not list((run / ".staging").glob("second-*/partial.txt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunDir(run).manifest("first") is not None  # the finished stage survived
    assert not (run / "second").exists()  # the stage in flight left nothing in place
    env.pop("TOY_SLEEP")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert (run / "second" / "value.txt").read_text() == str(2 * load_config().walk.top_k)
    assert not list((run / ".staging").iterdir())  # leftovers cleaned


def test_second_process_on_same_run_dir_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = SCRIPT.format(here=str(HERE), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TOY_SLEEP": "30"})
    try:
        deadline = time.time() + 60
        while not list((run / ".staging").glob("second-*/partial.txt")) and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(Exception, match="another linksage process is using run directory"):
            pipeline.run_stages(load_config(), run, ["first"])
    finally:
        proc.kill()
        proc.wait()


def test_each_stage_hands_back_the_gpu_cache_it_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After every stage run (not a skipped one), a process that has CUDA up empties torch's cache."""
    calls: list[str] = []

    class Cuda:
        @staticmethod
        def is_initialized() -> bool:
            return True

        @staticmethod
        def empty_cache() -> None:
            calls.append(toy_stages.CALLS[-1])

    monkeypatch.setitem(sys.modules, "torch", type("FakeTorch", (), {"cuda": Cuda}))
    pipeline.run_stages(load_config(), tmp_path, ["second"])
    assert calls == ["first", "second"]
    pipeline.run_stages(load_config(), tmp_path, ["second"])  # both fresh: nothing ran, nothing to hand back
    assert calls == ["first", "second"]
    monkeypatch.setattr(Cuda, "is_initialized", staticmethod(lambda: False))
    pipeline.run_stages(load_config(), tmp_path, ["second"], force=True)
    assert calls == ["first", "second"]  # CUDA never started: no call
