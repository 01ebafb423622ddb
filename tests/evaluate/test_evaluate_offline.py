"""``python -m linksage.evaluate`` on stored .npy files: same numbers as the library call; clear input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from evaluate_world import World, planted_world

from linksage.config.evaluate import EvaluateConfig
from linksage.evaluate.embeddings import evaluate_embeddings
from linksage.evaluate.offline import main

SETTINGS = ["evaluate.negatives_per_query=20", "evaluate.kurtosis_pairs=2000", "evaluate.report_pages=3"]


def _write(world: World, folder: Path) -> dict[str, Path]:
    pos = world.positives
    files = {
        "pages": folder / "pages.npy",
        "pins": folder / "pins.npy",
        "content_pages": folder / "content_pages.npy",
        "positives": folder / "links.parquet",
        "urls": folder / "urls.parquet",
        "text": folder / "pins.parquet",
    }
    np.save(files["pages"], world.graph.pages)
    np.save(files["pins"], world.graph.pins.astype(np.float16))
    np.save(files["content_pages"], world.content.pages)
    page_of = np.repeat(np.arange(pos.n_queries), pos.counts)
    pq.write_table(pa.table({"pin_idx": pos.indices, "page_idx": page_of}), files["positives"])
    pq.write_table(pa.table({"url": world.urls}), files["urls"])
    pq.write_table(pa.table({"text": world.pin_texts}), files["text"])
    return files


def test_cli_matches_the_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = planted_world()
    f = _write(world, tmp_path)
    out = tmp_path / "out"
    argv = [
        "--pages", str(f["pages"]), "--pins", str(f["pins"]), "--positives", str(f["positives"]),
        "--out", str(out), "--dims", "8,16,64", "--name", "graph",
        "--baseline", f"content_only={f['content_pages']},{f['pins']}",
        "--urls", str(f["urls"]), "--pin-text", str(f["text"]),
        "--set", "evaluate.ks=[10, 100]", *[a for s in SETTINGS for a in ("--set", s)],
    ]  # fmt: skip
    assert main(argv) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = EvaluateConfig(ks=(10, 100), negatives_per_query=20, kurtosis_pairs=2000)
    emb = type(world.graph)(world.graph.pages, world.graph.pins.astype(np.float16), (8, 16, 64))
    want = evaluate_embeddings(emb, world.positives, cfg).to_json()
    assert metrics["recall@100"] == pytest.approx(want["recall@100"]) and metrics["mrr"] == pytest.approx(want["mrr"])
    assert set(metrics["baselines"]) == {"content_only"} and "opaque" in metrics["slices"]
    assert (out / "report.html").read_text().count('class="card"') == 3


def test_cli_names_the_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = planted_world(n_pages=20, n_pins=100, n_topics=3)
    f = _write(world, tmp_path)
    pq.write_table(pa.table({"pin_idx": [3, 100], "page_idx": [0, 1]}), f["positives"])
    argv = ["--pages", str(f["pages"]), "--pins", str(f["pins"]), "--positives", str(f["positives"]), "--out", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{f['positives']}, row 1, column 'pin_idx': must be in 0..99 (value: 100)" in err
    pq.write_table(pa.table({"pin": [3]}), f["positives"])
    assert main(argv) == 2
    assert "missing column 'page_idx'" in capsys.readouterr().err
