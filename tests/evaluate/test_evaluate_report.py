"""metrics.json shape, the targets check, and the HTML report: it renders, holds the tables, its images exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evaluate_world import World, planted_world

from linksage.config.evaluate import EvaluateConfig
from linksage.evaluate.cards import build_cards, sample_rows
from linksage.evaluate.embeddings import Embeddings, Evaluation, evaluate_embeddings
from linksage.evaluate.metrics import mean_metrics, per_query_metrics, rank_positives
from linksage.evaluate.report import write_report
from linksage.evaluate.slices import degree_masks, opaque_mask
from linksage.evaluate.targets import check_targets, format_value

CFG = EvaluateConfig(negatives_per_query=40, kurtosis_pairs=4000, device="cpu")


@pytest.fixture(scope="module")
def world() -> World:
    return planted_world()


@pytest.fixture(scope="module")
def evaluated(world: World) -> tuple[dict[str, Any], Evaluation]:
    pos = world.positives
    texts = [
        [world.pin_texts[p] for p in pos.indices[pos.indptr[i] : pos.indptr[i + 1]]] for i in range(len(world.urls))
    ]
    slices = {"opaque": opaque_mask(world.urls, texts)} | degree_masks(pos.counts, (1, 2, 4))
    single = Embeddings(world.graph.pages[:, :16], world.graph.pins, (16,))
    ev = evaluate_embeddings(
        world.graph,
        pos,
        CFG,
        baselines={"content_only": world.content, "single_dim_16": single},
        slices=slices,
        skipped_baselines={"zero_shot": "not one space"},
    )
    return ev.to_json(), ev


def test_metrics_json_schema(evaluated: tuple[dict[str, Any], Evaluation]) -> None:
    metrics = evaluated[0]
    json.dumps(metrics, allow_nan=False)  # strict JSON
    for key in ("recall@10", "recall@50", "recall@100", "mrr"):
        assert set(metrics[key]) == {"8", "16", "32", "64"}
        assert set(metrics["baselines"]["content_only"][key]) == {"8", "16", "32", "64"}
        assert set(metrics["baselines"]["single_dim_16"][key]) == {"16"}
        assert set(metrics["slices"]["opaque"][key]) == {"8", "16", "32", "64"}
    assert metrics["pool_size"] == 1500 and metrics["num_queries"] == 120
    assert metrics["skipped_baselines"] == {"zero_shot": "not one space"}
    assert metrics["kurtosis_definition"].startswith("excess")
    assert -1 < metrics["negative_score_mean"] < metrics["negative_score_p95"] < 1
    assert metrics["kurtosis"] == metrics["distributions"]["64"]["kurtosis"]
    # the planted graph model is the better one, everywhere
    assert metrics["recall@100"]["64"] > metrics["baselines"]["content_only"]["recall@100"]["64"]


def test_slice_means_equal_a_direct_computation(world: World, evaluated: tuple[dict[str, Any], Evaluation]) -> None:
    metrics = evaluated[0]
    pos = world.positives
    mask = degree_masks(pos.counts, (1, 2, 4))["degree 2-3"]
    ranks = rank_positives(world.graph.pages, world.graph.pins, pos, (32,), max_k=100)[32]
    direct = mean_metrics(per_query_metrics(ranks, pos, (10, 50, 100)), mask)
    for name, value in direct.items():
        assert np.isclose(metrics["slices"]["degree 2-3"][name]["32"], value)
    assert metrics["slices"]["degree 2-3"]["num_queries"] == int(mask.sum())


def test_targets_are_checked_from_the_metrics() -> None:
    metrics = {
        "model": "graph",
        "dims": [16, 64, 256],
        "ks": [10, 100],
        "recall@100": {"16": 0.4, "64": 0.58, "256": 0.6},
        "baselines": {
            "content_only": {"dims": [16, 64, 256], "recall@100": {"256": 0.5}},
            "single_dim_64": {"dims": [64], "recall@100": {"64": 0.59}},
        },
        "slices": {
            "opaque": {"recall@100": {"256": 0.26}, "baselines": {"content_only": {"recall@100": {"256": 0.2}}}}
        },
        "negative_score_mean": -0.01,
        "negative_score_p95": 0.3,
    }
    t = check_targets(metrics)
    assert t["graph_vs_content_only"]["met"] is True and np.isclose(t["graph_vs_content_only"]["value"], 0.2)
    assert t["graph_vs_content_only_opaque"]["met"] is True and np.isclose(
        t["graph_vs_content_only_opaque"]["value"], 0.3
    )
    assert t["dim64_loss_vs_top"]["met"] is True and np.isclose(t["dim64_loss_vs_top"]["value"], 1 - 0.58 / 0.6)
    assert t["matryoshka64_vs_single64"]["met"] is False
    assert t["negative_mean_near_zero"]["met"] is True and t["negative_p95_below_0.25"]["met"] is False
    # values read as a person would: relative gains in percent, recall differences signed
    assert format_value(t["graph_vs_content_only"]) == "+20.0%"
    assert format_value(t["matryoshka64_vs_single64"]) == "-0.0100"
    assert format_value(t["negative_p95_below_0.25"]) == "0.3000"
    del metrics["baselines"]["single_dim_64"]
    assert check_targets(metrics)["matryoshka64_vs_single64"]["met"] is None
    # a pool no larger than k: every model finds every positive, so no recall check is decided
    metrics["pool_size"] = 100
    small = check_targets(metrics)
    for name in ("graph_vs_content_only", "graph_vs_content_only_opaque", "dim64_loss_vs_top"):
        assert small[name]["met"] is None and "the pool (100 pins) is not larger than k=100" in small[name]["missing"]
    assert small["negative_p95_below_0.25"]["met"] is False


def test_report_renders_with_tables_images_and_pages(
    world: World, evaluated: tuple[dict[str, Any], Evaluation], tmp_path: Path
) -> None:
    metrics, ev = evaluated
    targets = check_targets(metrics)
    rows = sample_rows(len(world.urls), 5, 0)
    cards = build_cards(
        ev,
        world.graph,
        rows,
        page_url=lambda r: world.urls[r],
        pin_text=lambda p: world.pin_texts[p],
        neighbours=lambda r: [(world.urls[(r + 1) % 120], 7.0)],
        k=6,
    )
    path = write_report(tmp_path, ev, metrics, targets, cards, notes=["<script>escaped</script>"])
    html = path.read_text()
    assert path == tmp_path / "report.html"
    for heading in ("Targets", "Retrieval", "Slices", "Score distributions", "Plots", "Sampled query pages"):
        assert f"<h2>{heading}</h2>" in html
    assert "recall@100 \\ dim" in html and "content_only" in html and "opaque" in html
    assert html.count('class="card"') == 5 and world.urls[rows[0]] in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 5
    for src in images:
        assert (tmp_path / src).stat().st_size > 1000, src  # a real PNG beside the report
        assert (tmp_path / src).read_bytes()[:4] == b"\x89PNG"
    # every positive shown in a card is a true positive of that page
    for card, row in zip(cards, rows, strict=True):
        own = {
            world.pin_texts[p]
            for p in world.positives.indices[world.positives.indptr[row] : world.positives.indptr[row + 1]]
        }
        assert all((h.text in own) == h.positive for h in card.top_pins)
        assert [h.rank for h in card.top_pins] == [str(i) for i in range(1, 7)]
