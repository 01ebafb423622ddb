"""scripts/plot_ab.py: reads each variant's metrics from an A/B archive and plots them against a base."""

from __future__ import annotations

import importlib
import io
import json
import re
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plot_ab(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("plot_ab")


def _metrics(recall: dict[str, float], baselines: dict[str, dict[str, float]] | None = None) -> dict[str, object]:
    return {"recall@100": recall, "baselines": {k: {"recall@100": v} for k, v in (baselines or {}).items()}}


def _archive(
    path: Path, variants: dict[str, dict[str, object]], train: dict[str, dict[str, object]] | None = None
) -> Path:
    """An archive laid out as `device_ab.sh collect` writes it, with a log and a train manifest (holding the
    variant's [train] section from ``train``, empty by default) beside the metrics."""
    manifests = {v: {"config": {"train": (train or {}).get(v, {})}} for v in variants}
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in [("tmp/ab-base.log", b"A/B done\n")] + [
            (f"tmp/runs/reddit-ab/{v}/{part}", json.dumps(m if part.startswith("evaluate") else manifests[v]).encode())
            for v, m in variants.items()
            for part in ("evaluate/metrics.json", "train/manifest.json")
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


BASE = {"16": 0.40, "64": 0.60, "256": 0.66}
VARIANT = {"16": 0.42, "64": 0.57, "256": 0.66}


def test_read_metrics_names_each_variant_by_its_folder(plot_ab: ModuleType, tmp_path: Path) -> None:
    tgz = _archive(tmp_path / "ab.tgz", {"base": _metrics(BASE), "w256": _metrics(VARIANT)})
    got = plot_ab.read_metrics(str(tgz))
    assert sorted(got) == ["base", "w256"]
    assert got["w256"]["recall@100"] == VARIANT


def test_relative_change_is_percent_against_the_base_at_shared_dims(plot_ab: ModuleType) -> None:
    rel = plot_ab.relative_change({"64": 0.57, "256": 0.66}, BASE)
    assert rel == pytest.approx({64: -5.0, 256: 0.0})  # 16 is the base's only: no point there


def test_main_writes_a_png(plot_ab: ModuleType, tmp_path: Path) -> None:
    tgz = _archive(
        tmp_path / "ab.tgz",
        {"base": _metrics(BASE, {"single_dim_64": {"64": 0.61}}), "w256": _metrics(VARIANT)},
    )
    out = tmp_path / "plot.png"
    assert plot_ab.main([str(tgz), str(out), "--base", "base", "--variants", "w256=weights on 256"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_names_missing_variants_and_the_ones_there(
    plot_ab: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tgz = _archive(tmp_path / "ab.tgz", {"base": _metrics(BASE), "w256": _metrics(VARIANT)})
    out = tmp_path / "plot.png"
    assert plot_ab.main([str(tgz), str(out), "--base", "base", "--variants", "w256,w8"]) == 1
    err = capsys.readouterr().err
    assert "no metrics.json for w8; it has base, w256" in err and not out.exists()


# scripts/seed_table.py: the README's table averaged over runs of one config


@pytest.fixture
def seed_table(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("seed_table")


def _model(r100: dict[str, float], r10: float, mrr: float) -> dict[str, object]:
    return {"recall@100": r100, "recall@10": {"256": r10}, "mrr": {"256": mrr}}


def _evaluated(graph: float, content: float, opaque: float, opaque_content: float) -> dict[str, object]:
    """A metrics.json with the baselines and the opaque slice: graph and content-only at 64 and 256."""
    baselines = {
        "content_only": _model({"64": content - 0.05, "256": content}, 0.5, 0.4),
        "zero_shot": _model({"64": 0.4, "256": 0.5}, 0.45, 0.35),
        "single_dim_64": {"recall@100": {"64": 0.6}, "recall@10": {}, "mrr": {}},
        "single_dim_256": _model({"256": 0.7}, 0.55, 0.45),
    }
    opaque_block = _model({"64": opaque, "256": opaque}, 0.1, 0.05)
    opaque_block["baselines"] = {
        "content_only": _model({"64": opaque_content, "256": opaque_content}, 0.05, 0.03),
        "zero_shot": _model({"64": 0.01, "256": 0.02}, 0.01, 0.01),
    }
    return {
        **_model({"64": graph - 0.06, "256": graph}, 0.55, 0.45),
        "baselines": baselines,
        "slices": {"opaque": opaque_block},
        "negative_score_mean": 0.01,
        "negative_score_p95": 0.15,
        "kurtosis": 2.0,
    }


def test_seed_table_averages_every_cell_and_each_target(
    seed_table: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _archive(tmp_path / "a.tgz", {"full": _evaluated(0.66, 0.60, 0.22, 0.11)})
    b = _archive(tmp_path / "b.tgz", {"full1": _evaluated(0.68, 0.62, 0.24, 0.12)}, {"full1": {"seed": 1}})
    assert seed_table.main([f"{a}:full", f"{b}:full1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mean of 2 runs (seeds 0, 1):")  # a manifest without a field: its default
    assert "| **linksage graph model** | 0.610 | 0.670 | 0.550 | 0.450 |" in out  # (0.60 + 0.62) / 2 at 64
    assert "| single-dim model trained at 64 only | 0.600 |  |  |  |" in out  # dims it lacks stay empty
    assert "| *opaque pages:* content-only | 0.115 | 0.115 | 0.050 | 0.030 |" in out
    # every cell of the graph model and content-only moves by 0.02 here; the line names the first one
    assert re.search(r"largest spread of a cell over the runs \(max - min\): 0\.0200 \(.+, recall@100 at \d+\)", out)
    # gains per run: 0.66 / 0.60 = +10%, 0.68 / 0.62 = +9.677%; opaque 0.22 / 0.11 = 0.24 / 0.12 = +100%
    assert "gain at 256, %: 10.000 / 9.677 (mean 9.839)" in out
    assert "gain on opaque pages at 256, %: 100.000 / 100.000 (mean 100.000)" in out
    assert "64-dim prefix against the single-dim 64 model, %: 0.000 / 3.333" in out


def test_seed_table_refuses_a_run_without_its_baselines(
    seed_table: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _archive(tmp_path / "a.tgz", {"full": _evaluated(0.66, 0.60, 0.22, 0.11), "quick": _metrics(BASE)})
    assert seed_table.main([f"{a}:quick"]) == 1
    assert "quick was evaluated without its trained baselines (--baselines)" in capsys.readouterr().err
    assert seed_table.main([f"{a}:nope"]) == 1
    assert "no metrics.json for nope; it has full, quick" in capsys.readouterr().err
    assert seed_table.main(["no-colon"]) == 2


def test_seed_table_refuses_runs_of_different_configs_or_data(
    seed_table: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _evaluated(0.66, 0.60, 0.22, 0.11)
    fewer_dims = {**run, "recall@100": {"256": 0.66}}
    other_pages = {**run, "num_queries": 7}
    a = _archive(
        tmp_path / "a.tgz",
        {"full": run, "lr": run, "dims": fewer_dims, "pages": other_pages},
        {"full": {"seed": 0, "lr": 0.002}, "lr": {"seed": 1, "lr": 0.001}, "dims": {"seed": 1}, "pages": {"seed": 1}},
    )
    cases = {
        "lr": "lr is another config than",
        "dims": "dims ['256']",
        "pages": "has num_queries 7",
        "full": "a run is given twice",
    }
    for other, why in cases.items():
        assert seed_table.main([f"{a}:full", f"{a}:{other}"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("not runs of one config:") and why in err, err


def test_absolute_mode_reads_several_archives_and_plots_one_dim_variants_as_points(
    plot_ab: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _archive(tmp_path / "a.tgz", {"base": _metrics(BASE)})
    second = _archive(tmp_path / "b.tgz", {"w256": _metrics(VARIANT), "d64": _metrics({"64": 0.61})})
    out = tmp_path / "plot.png"
    args = [str(first), str(out), "--absolute", "--also", str(second), "--variants", "base=titles,w256,d64=single 64"]
    assert plot_ab.main(args) == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = {**plot_ab.read_metrics(str(first)), **plot_ab.read_metrics(str(second))}
    series = plot_ab.absolute_series(metrics, {"base": "titles", "d64": "single 64", "w256": ""})
    assert series["titles"] == ([16, 64, 256], [0.40, 0.60, 0.66])
    assert series["single 64"] == ([64], [0.61]) and series["w256"][0] == [16, 64, 256]  # one dim: a point
    clash = [str(first), str(tmp_path / "c.png"), "--absolute", "--also", str(first), "--variants", "base"]
    assert plot_ab.main(clash) == 1
    assert "variants base are in an earlier archive too" in capsys.readouterr().err
    assert plot_ab.main([str(first), str(tmp_path / "d.png"), "--variants", "base"]) == 2  # relative needs --base
    assert "--base is required unless --absolute" in capsys.readouterr().err


def test_a_variant_twice_in_one_archive_is_an_error(
    plot_ab: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tgz = tmp_path / "ab.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for run in ("reddit-ab", "bw1.0-ab"):  # two run dirs' A/Bs, each with a variant "base"
            blob = json.dumps(_metrics(BASE)).encode()
            info = tarfile.TarInfo(f"tmp/runs/{run}/base/evaluate/metrics.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    assert plot_ab.main([str(tgz), str(tmp_path / "p.png"), "--absolute", "--variants", "base"]) == 1
    assert "variant 'base' is in it twice" in capsys.readouterr().err
