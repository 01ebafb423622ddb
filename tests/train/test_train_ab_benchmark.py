"""benchmarks/train_ab.py: variants share the upstream run's files, train apart, and resume when done."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from linksage.config import ConfigError, load_config
from linksage.pipeline import run_stages

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "ingest.synthetic.n_links=1500",
    "train.steps=12",
    "train.eval_every=6",
    "train.checkpoint_every=0",
    "evaluate.report_pages=2",
]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # run as a script, it imports its sibling _machine.py
    return importlib.import_module("train_ab")


def test_variant_syntax(bench: ModuleType) -> None:
    assert bench.parse_variant("base:") == ("base", [])
    assert bench.parse_variant(" w : train.dim_weights=[1, 2]; train.lr=0.01 ;") == (
        "w",
        ["train.dim_weights=[1, 2]", "train.lr=0.01"],
    )
    for bad in ("no-colon", ": train.lr=1", "a b: train.lr=1", "x: lr=1", "x: train.lr"):
        with pytest.raises(ConfigError):
            bench.parse_variant(bad)


def test_a_bad_variant_fails_before_any_variant_trains(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["--config", str(ROOT / "configs" / "demo.toml"), "--run-dir", str(tmp_path / "run")]
    args += ["--variant", "good: train.lr=0.01", "--variant", "typo: train.lrr=0.01"]
    with pytest.raises(ConfigError, match=r"--variant typo: unknown config key 'train.lrr'"):
        bench.main(args)
    assert not (tmp_path / "run-ab").exists()  # nothing was linked or trained for the good variant


def test_ab_links_upstream_trains_each_variant_and_resumes(
    bench,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    config = ROOT / "configs" / "demo.toml"
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="have not completed"):
        bench.link_upstream(run, tmp_path / "x")
    run_stages(load_config(config, TINY), run, ["walk"])
    args = ["--config", str(config), "--run-dir", str(run), *[a for o in TINY for a in ("--set", o)]]
    args += ["--variant", "base:", "--variant", "lr: train.lr=0.01"]
    result = bench.main(args)
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(result))
    rows = {r["variant"]: r for r in result["variants"]}
    assert set(rows) == {"base", "lr"} and all(r["seconds"] is not None for r in rows.values())
    assert rows["base"]["recall@100"].keys() == {"8", "16", "32", "64"}
    assert rows["base"]["recall@100"] != rows["lr"]["recall@100"]  # the override reached training
    assert all(r["baselines@100"] == {} for r in rows.values())  # quick mode: no trained baselines
    assert any(line.startswith("| lr |") for line in out)
    # upstream artifacts are the run's own files (hard links), not copies
    for name in ("base", "lr"):
        linked = tmp_path / "run-ab" / name / "walk" / "manifest.json"
        assert linked.stat().st_ino == (run / "walk" / "manifest.json").stat().st_ino
    # a finished variant is read back, not rerun
    again = bench.main(args)
    assert [r["seconds"] for r in again["variants"]] == [None, None]
    assert [r["recall@100"] for r in again["variants"]] == [r["recall@100"] for r in result["variants"]]


def test_evaluation_slots_admit_at_most_n_holders_at_once(bench: ModuleType, tmp_path: Path) -> None:
    import threading

    held: list[int] = []
    events: list[str] = []

    def third() -> None:
        with bench.slot(tmp_path, 2, poll_s=0.01) as i:
            events.append(f"third got {i}")

    with bench.slot(tmp_path, 2) as a, bench.slot(tmp_path, 2) as b:
        held += [a, b]
        waiter = threading.Thread(target=third)
        waiter.start()
        waiter.join(timeout=0.3)
        assert waiter.is_alive() and not events  # both slots taken: the third waits
        events.append("released")
    waiter.join(timeout=5)
    assert sorted(held) == [0, 1] and events[0] == "released" and events[1] in ("third got 0", "third got 1")
    with bench.slot(tmp_path, 0) as unlimited:  # 0: no limit, no lock file
        assert unlimited == -1
