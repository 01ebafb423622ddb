"""Atomic writes and the run directory's sealing of stage folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linksage.rundir import RunDir, atomic_path, atomic_write_json


def test_atomic_write_json_round_trips_numpy(tmp_path: Path) -> None:
    import numpy as np

    atomic_write_json(tmp_path / "m.json", {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 3, "b": 0.5, "c": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("died")
    assert list(tmp_path.iterdir()) == []


def test_seal_replaces_whole_folder(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    first = rd.new_staging("s")
    (first / "old.txt").write_text("1")
    rd.seal("s", first, {"key": "a"})
    second = rd.new_staging("s")
    (second / "new.txt").write_text("2")
    rd.seal("s", second, {"key": "b"})
    assert sorted(p.name for p in rd.stage_dir("s").iterdir()) == ["manifest.json", "new.txt"]
    assert rd.manifest("s") == {"key": "b"}


def test_require_names_the_missing_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="stage 'walk' has not completed"):
        RunDir(tmp_path).require("walk")
