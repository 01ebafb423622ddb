"""The walk stage: artifacts of docs/artifacts.md (walk/), empty lists, resumable blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from walk_reference import graph_from_edges, write_graph_dir

from linksage.config import Config, WalkConfig
from linksage.pipeline import StageContext
from linksage.rundir import RunDir
from linksage.walk import stage
from linksage.walk.pixie import WalkGraph, walk_pages


def small_run(tmp_path: Path) -> tuple[RunDir, WalkGraph]:
    graph = graph_from_edges(
        {"pin": 6, "page": 5, "board": 1, "domain": 2},
        {
            ("pin", "page"): [(0, 0), (1, 0), (1, 1), (2, 1), (3, 2), (4, 3)],
            ("pin", "board"): [(0, 0), (3, 0)],
            ("page", "domain"): [(0, 0), (1, 0), (2, 1)],
        },
    )  # page 4 has no edge at all
    rd = RunDir(tmp_path / "run")
    rd.seal("graph", write_graph_dir(graph, rd.new_staging("graph")), {"key": "graph-key"})
    return rd, graph


def run_stage(rd: RunDir, cfg: WalkConfig) -> tuple[Path, stage.StageResult]:
    ctx = StageContext(config=Config(walk=cfg), run_dir=rd, stage="walk", out=rd.new_staging("walk"))
    return ctx.out, stage.run(ctx)


def test_stage_writes_parquet_and_dense_arrays(tmp_path: Path) -> None:
    rd, graph = small_run(tmp_path)
    cfg = WalkConfig(top_k=3, steps=500)
    out, result = run_stage(rd, cfg)
    nbr, vis = np.load(out / "neighbours.npy"), np.load(out / "visits.npy")
    assert nbr.dtype == np.int32 and vis.dtype == np.float32 and nbr.shape == vis.shape == (5, 3)
    expected_nbr, expected_vis = walk_pages(graph, np.arange(5), cfg)
    np.testing.assert_array_equal(nbr, expected_nbr)
    np.testing.assert_array_equal(vis, expected_vis)
    table = pq.read_table(out / "neighbours.parquet")
    assert table.schema.field("neighbours").type.value_type == pa.int32()
    assert table.schema.field("visits").type.value_type == pa.float32()
    rows = table.to_pylist()
    assert [r["page_idx"] for r in rows] == [0, 1, 2, 3, 4]
    for r in rows:
        k = len(r["neighbours"])
        assert r["neighbours"] == nbr[r["page_idx"], :k].tolist() and np.all(nbr[r["page_idx"], k:] == -1)
        assert r["visits"] == pytest.approx(vis[r["page_idx"], :k].tolist())
    assert rows[4]["neighbours"] == [] and rows[4]["visits"] == []  # no edges: an empty list, not an error
    assert set(rows[0]["neighbours"]) == {1, 2}  # via pin 1, via board 0 (pin 3), via domain 0
    assert result.counts["pages_without_neighbours"] == 2  # page 4, and page 3 whose only pin links only it
    assert result.metrics["median_neighbours"] >= 1


def test_stage_resumes_from_finished_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rd, graph = small_run(tmp_path)
    cfg = WalkConfig(top_k=3, steps=500)
    monkeypatch.setattr(stage, "BLOCK", 2)
    calls: list[int] = []
    real = stage.run_walks

    def counting(graph: WalkGraph, pages: np.ndarray, cfg: WalkConfig) -> stage.WalkResult:
        calls.append(len(pages))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third block
        return real(graph, pages, cfg)

    monkeypatch.setattr(stage, "run_walks", counting)
    with pytest.raises(KeyboardInterrupt):
        run_stage(rd, cfg)
    calls.clear()
    monkeypatch.setattr(stage, "run_walks", lambda g, p, c: calls.append(len(p)) or real(g, p, c))
    out, _ = run_stage(rd, cfg)
    assert calls == [1]  # only the last block (page 4) was walked again
    np.testing.assert_array_equal(np.load(out / "neighbours.npy"), walk_pages(graph, np.arange(5), cfg)[0])
    calls.clear()
    run_stage(rd, WalkConfig(top_k=3, steps=400))  # another config: no stale block is reused
    assert calls == [2, 2, 1]
