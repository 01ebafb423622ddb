"""SIGKILL a writer in the middle of an upsert: the store must be at the old version or the complete new one."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from store_rows import DIM, batches, expected, state

from linksage.store.lance_store import EmbeddingStore

HERE = Path(__file__).resolve().parent
OLD, NEW = (np.arange(0, 100), 1), (np.arange(50, 180), 2)
OLD_STATE, NEW_STATE = expected([OLD]), expected([OLD, NEW])


def spawn(path: Path, delay: float = 0.0, pause: str | None = None, writers: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("LINKSAGE_STORE_PAUSE", None)
    if pause:
        env["LINKSAGE_STORE_PAUSE"] = pause
    args = [str(path), "50", "180", "2", "2013-04-02", str(delay), str(writers)]
    return subprocess.Popen(
        [sys.executable, str(HERE / "store_writer.py"), *args], stdout=subprocess.PIPE, text=True, env=env
    )


def wait_for(proc: subprocess.Popen[str], prefix: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"writer exited with {proc.returncode} before printing {prefix!r}")
    raise AssertionError(f"writer did not print {prefix!r} within {timeout}s")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def assert_old_or_new(path: Path) -> str:
    """The newest readable version holds exactly the old rows (and is the old version) or exactly the new ones."""
    store = EmbeddingStore.open(path)
    table = store.read()
    now = state(table)
    assert table.num_rows == len(now), "duplicate page ids in the newest version"
    if now == OLD_STATE:
        assert store.version == 2
        return "old"
    assert now == NEW_STATE, f"version {store.version} is neither the old nor the new state ({table.num_rows} rows)"
    assert store.version == 3
    return "new"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template"
    EmbeddingStore.open_or_create(path, DIM).upsert(batches(*OLD), "2013-04-01")
    return path


def fresh(template: Path, name: str) -> Path:
    path = template.parent / name
    shutil.copytree(template, path)
    return path


@pytest.mark.parametrize(
    "point,outcome", [("mid_stream", "old"), ("stream_end", "old"), ("after_commit", "new")], ids=str
)
def test_kill_at_labelled_points(template: Path, point: str, outcome: str) -> None:
    path = fresh(template, point)
    proc = spawn(path, pause=point)
    wait_for(proc, f"paused at {point}")
    kill(proc)
    assert assert_old_or_new(path) == outcome
    if point != "after_commit":
        return
    # killed after the commit, before the day's tag: re-running the day completes it (tag set, no duplicates)
    assert EmbeddingStore.open(path).history()[-1].days == ()
    proc = spawn(path)
    wait_for(proc, "done")
    proc.wait(timeout=30)
    store = EmbeddingStore.open(path)
    assert state(store.read()) == NEW_STATE and store.count() == len(NEW_STATE)
    assert store.history()[-1].days == ("2013-04-02",)


@pytest.mark.parametrize("point", ["mid_stream", "stream_end"])
def test_kill_during_a_first_fill_by_parallel_writers_leaves_the_empty_store(tmp_path: Path, point: str) -> None:
    path = tmp_path / "empty"
    EmbeddingStore.open_or_create(path, DIM)
    proc = spawn(path, pause=point, writers=3)
    wait_for(proc, f"paused at {point}")
    kill(proc)
    store = EmbeddingStore.open(path)
    assert (store.version, store.count()) == (1, 0)
    proc = spawn(path, writers=3)  # the rerun fills it in one version
    wait_for(proc, "done")
    proc.wait(timeout=30)
    store = EmbeddingStore.open(path)
    assert store.version == 2 and state(store.read()) == expected([NEW])


def _random_kills(template: Path, n: int, seed: int) -> set[str]:
    rng = random.Random(seed)
    seen = set()
    for i in range(n):
        path = fresh(template, f"random-{i}")
        proc = spawn(path, delay=0.04)  # 7 batches: the upsert spans ~0.3 s plus the commit
        wait_for(proc, "start")
        time.sleep(rng.uniform(0.0, 0.6))
        kill(proc)
        seen.add(assert_old_or_new(path))
        shutil.rmtree(path)
    return seen


def test_kill_at_random_moments(template: Path) -> None:
    assert _random_kills(template, 2, seed=0) <= {"old", "new"}


@pytest.mark.slow
def test_kill_at_many_random_moments(template: Path) -> None:
    seen = _random_kills(template, 25, seed=1)
    assert seen == {"old", "new"}  # the kills landed on both sides of the commit
