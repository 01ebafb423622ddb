"""SIGKILL an update at labelled points: the store is at the old version or the complete new one, and a
re-run finishes the day with exactly the result of an uninterrupted update."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_update_day import sets, store_rows
from update_world import DAY, config, copy_run

from linksage.store.lance_store import EmbeddingStore
from linksage.update.run import update

FAST = [("update", "after_content"), ("update", "mid_swap"), ("store", "mid_stream"), ("store", "after_commit")]
SLOW = [("update", "after_ingest"), ("update", "after_walk"), ("update", "ready"), ("update", "before_embed")]
SLOW += [("store", "stream_end")]


@pytest.fixture(scope="module")
def reference(template: Path, day: Path) -> dict[int, tuple[bytes, str, str]]:
    """The store rows after an uninterrupted update of the day."""
    run = copy_run(template, template.parent / "run-reference")
    update(config(), run, day, DAY)
    return store_rows(run)


def killed_update(run: Path, day: Path, kind: str, point: str) -> None:
    """Start ``linksage update`` in a subprocess, wait until it pauses at ``point``, SIGKILL it."""
    env = {**os.environ, f"LINKSAGE_{kind.upper()}_PAUSE": point, f"LINKSAGE_{kind.upper()}_PAUSE_S": "120"}
    argv = [sys.executable, "-m", "linksage", "--quiet", "update", "--run-dir", str(run), "--input", str(day)]
    proc = subprocess.Popen([*argv, "--day", DAY, *sets()], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(f"paused at {point}"):
            break
        if not line and proc.poll() is not None:
            raise AssertionError(f"update exited with {proc.returncode} before pausing at {point}")
    else:
        raise AssertionError(f"update did not pause at {point}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def check_kill_and_rerun(
    run: Path, day: Path, kind: str, point: str, reference: dict[int, tuple[bytes, str, str]]
) -> None:
    before = store_rows(run)
    old_version = EmbeddingStore.open(run / "store").version
    killed_update(run, day, kind, point)
    store = EmbeddingStore.open(run / "store")
    rows = store_rows(run)
    if store.version == old_version:
        assert rows == before, f"killed at {point}: the old version changed"
    else:
        assert store.version == old_version + 1 and rows == reference, f"killed at {point}: a partial new version"
    summary = update(config(), run, day, DAY)  # the re-run finishes the day
    assert store_rows(run) == reference
    assert EmbeddingStore.open(run / "store").version == old_version + 1 == summary["store_version"]
    assert not any((run / ".work" / "update").glob("*"))


@pytest.mark.parametrize(("kind", "point"), FAST)
def test_sigkill_during_update(
    kind: str, point: str, run: Path, day: Path, reference: dict[int, tuple[bytes, str, str]]
) -> None:
    check_kill_and_rerun(run, day, kind, point, reference)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "point"), SLOW)
def test_sigkill_during_update_more_points(
    kind: str, point: str, run: Path, day: Path, reference: dict[int, tuple[bytes, str, str]]
) -> None:
    check_kill_and_rerun(run, day, kind, point, reference)
