"""scripts/plot_ab.py: reads each variant's metrics from an A/B archive and plots them against a base."""

from __future__ import annotations

import importlib
import io
import json
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


def _archive(path: Path, variants: dict[str, dict[str, object]]) -> Path:
    """An archive laid out as `device_ab.sh collect` writes it, with a log and a manifest beside the metrics."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in [("tmp/ab-base.log", b"A/B done\n")] + [
            (f"tmp/runs/reddit-ab/{v}/{part}", json.dumps(m if part.startswith("evaluate") else {}).encode())
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
