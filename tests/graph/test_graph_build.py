"""The graph stage on hand-built tables: filters, clusters, pruning, kept indices, artifacts, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from graph_world import unit, write_content, write_ingest

from linksage.config import Config, ConfigError, GraphConfig, load_config
from linksage.errors import InputError
from linksage.graph.build import build_graph, read_inputs
from linksage.graph.csr import load_csr
from linksage.pipeline import StageContext
from linksage.rundir import RunDir

# pins 0..8, pages 0..5; page 5 has nothing; the link (8, 4) contradicts its page (cosine 0).
LINKS = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 3), (6, 3), (0, 0), (7, 4), (8, 4)]


def world(tmp: Path) -> tuple[Path, Path]:
    ingest = write_ingest(
        tmp / "ingest",
        n_pins=9,
        page_domains=[0, 0, 1, 1, None, None],
        links=LINKS,
        board_pins=[(0, 0), (0, 2), (0, 4), (1, 6), (0, 0)],
        n_boards=2,
        n_domains=2,
    )
    rng = np.random.default_rng(0)
    page_text = unit(rng.normal(size=(6, 16)))
    pin_target = page_text[[0, 0, 1, 1, 2, 3, 3, 4, 4]].astype(np.float32)
    pin_target[8] = unit(np.eye(16)[:1] - (np.eye(16)[:1] @ page_text[4].astype(np.float32)) * page_text[4])[0]
    pin_text = unit(rng.normal(size=(9, 16)))
    pin_text[5] = pin_text[2]  # near-duplicate pins 2 and 5 link pages 1 and 3
    content = write_content(tmp / "content", pin_text, page_text, pin_target)
    return ingest, content


def test_build_filters_clusters_and_keeps_indices(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    graph = build_graph(read_inputs(ingest, content), GraphConfig(cohesion_threshold=0.3))
    assert graph.counts == {"pin": 9, "page": 6, "board": 2, "domain": 2, "cluster": 1}
    t = graph.tallies
    assert (t["links"], t["links_duplicate"], t["links_cohesion_removed"], t["edges_pin_page"]) == (10, 1, 1, 8)
    assert graph.pin_cluster.tolist() == [-1, -1, 0, -1, -1, 0, -1, -1, -1]
    assert graph.link_kept.tolist() == [True] * 7 + [False, True, False]
    assert abs(graph.link_scores[8] - 1.0) < 1e-2 and abs(graph.link_scores[9]) < 1e-2
    csr = graph.csr()
    page_pin = csr[("page", "pin")]
    assert page_pin[0][-1] == 8 and page_pin[0][5] == page_pin[0][6]  # page 5 keeps its index, no edges
    assert t["edges_pin_board"] == 4  # the duplicate membership counted once
    assert t["edges_page_domain"] == 4


def test_the_configured_near_duplicate_method_clusters_the_pins(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    inputs = read_inputs(ingest, content)
    base = GraphConfig(cohesion_threshold=0.3, near_duplicate_exact_max=0)  # beyond the flat index: the method
    graph = build_graph(inputs, base)
    assert graph.metrics["near_duplicates"]["method"] == "cells"
    assert graph.pin_cluster.tolist() == [-1, -1, 0, -1, -1, 0, -1, -1, -1]
    exact = build_graph(inputs, dataclasses.replace(base, near_duplicate_exact_max=10_000))
    assert exact.metrics["near_duplicates"]["method"] == "knn"  # the flat index, whatever the method
    assert exact.pin_cluster.tolist() == graph.pin_cluster.tolist()
    with pytest.raises(ConfigError, match=r"graph\.near_duplicate_method: 'lsh' is not one of 'cells', 'knn'"):
        load_config(None, ['graph.near_duplicate_method="lsh"'])


def test_min_degree_drops_nodes_but_not_indices(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    graph = build_graph(read_inputs(ingest, content), GraphConfig(cohesion_threshold=0.3, min_degree=2))
    # pins 1, 3 and 7 have one edge (their page); page 4 has one pin and no domain
    assert graph.tallies["min_degree_dropped_pin"] == 3
    assert graph.tallies["min_degree_dropped_page"] == 1
    pins, pages = graph.edges[("pin", "page")]
    assert not set(pins.tolist()) & {1, 3, 7} and 4 not in pages.tolist()
    assert graph.counts["pin"] == 9


def test_hub_cap_limits_every_edge_type(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    graph = build_graph(read_inputs(ingest, content), GraphConfig(hub_cap=1))
    for a, b in graph.edges.values():
        if len(a):
            assert np.bincount(a).max() <= 1 and np.bincount(b).max() <= 1
    assert graph.tallies["hub_capped_pin_page"] > 0


def test_stage_writes_the_documented_artifacts(tmp_path: Path) -> None:
    from linksage.graph.stage import run

    ingest, content = world(tmp_path / "src")
    rd = RunDir(tmp_path / "run")
    for name, folder in (("ingest", ingest), ("content", content)):
        rd.seal(name, _copy(folder, rd.new_staging(name)), {"key": name})
    ctx = StageContext(config=Config(graph=GraphConfig(cohesion_threshold=0.3)), run_dir=rd, stage="graph",
                       out=rd.new_staging("graph"))  # fmt: skip
    result = run(ctx)
    out = ctx.out
    assert json.loads((out / "nodes.json").read_text())["cluster"] == 1
    for src, dst in [("pin", "page"), ("page", "pin"), ("pin", "board"), ("board", "pin"), ("page", "domain"),
                     ("domain", "page"), ("pin", "cluster"), ("cluster", "pin")]:  # fmt: skip
        indptr, indices = load_csr(out, src, dst)
        assert indptr.dtype == np.int64 and indices.dtype == np.int32
    assert np.load(out / "pin_cluster.npy").tolist()[2] == 0
    assert result.counts["links_cohesion_removed"] == 1
    assert result.metrics["components"]["isolated_pages"] == 1
    assert result.metrics["degrees"]["page__pin"]["zero"] == 1
    assert result.metrics["near_duplicates"]["clusters"] == 1


def test_bad_index_names_file_row_and_value(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    table = pq.read_table(ingest / "links.parquet")
    pins = table.column("pin_idx").to_numpy().copy()
    pins[3] = 42
    pq.write_table(table.set_column(0, "pin_idx", pa.array(pins, pa.int32())), ingest / "links.parquet")
    with pytest.raises(
        InputError, match=r"links.parquet, row 3, column 'pin_idx': index out of range \[0, 9\) \(value: 42\)"
    ):
        read_inputs(ingest, content)


def test_missing_column_is_named(tmp_path: Path) -> None:
    ingest, content = world(tmp_path)
    pq.write_table(pq.read_table(ingest / "links.parquet").drop_columns(["page_idx"]), ingest / "links.parquet")
    with pytest.raises(InputError, match=r"links.parquet, column 'page_idx': missing column"):
        read_inputs(ingest, content)


def test_config_errors_name_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"graph.hub_cap: must be >= 1, got 0"):
        load_config(None, ["graph.hub_cap=0"])
    with pytest.raises(ConfigError, match=r"graph.near_duplicate_threshold: must be in \(0, 1\], got 1.5"):
        dataclasses.replace(GraphConfig(), near_duplicate_threshold=1.5)


def _copy(src: Path, dst: Path) -> Path:
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst
