"""The real pipeline up to the walk stage, through the CLI: a synthetic world and a slice of Reddit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from linksage.cli import main

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _check_run(run: Path) -> dict[str, object]:
    graph = json.loads((run / "graph" / "manifest.json").read_text())
    walk = json.loads((run / "walk" / "manifest.json").read_text())
    n_pages = pq.read_table(run / "ingest" / "pages.parquet", columns=["page_idx"]).num_rows
    nodes = json.loads((run / "graph" / "nodes.json").read_text())
    assert nodes["page"] == n_pages
    nbr = np.load(run / "walk" / "neighbours.npy")
    assert nbr.shape[0] == n_pages and nbr.max() < n_pages
    assert not np.any(nbr == np.arange(n_pages)[:, None])  # never the page itself
    table = pq.read_table(run / "walk" / "neighbours.parquet")
    assert table.num_rows == n_pages
    assert walk["counts"]["pages_with_neighbours"] + walk["counts"]["pages_without_neighbours"] == n_pages
    return {"graph": graph, "walk": walk}


def test_synthetic_world_through_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["--quiet", "run", "walk", "--run-dir", str(run), "--set", "ingest.synthetic.n_links=3000"]
    argv += ["--set", "content.text_encoder=hashing", "--set", "content.image_encoder=none"]
    argv += ["--set", "train.dims=[16, 64]"]  # the hashed text targets are 64 wide
    assert main(argv) == 0
    result = _check_run(run)
    walk = result["walk"]
    assert isinstance(walk, dict) and walk["metrics"]["median_neighbours"] == 20  # a connected world


@pytest.mark.shared
@pytest.mark.slow  # ~15 s: ingest reads the whole posts table before slicing
def test_reddit_slice_through_the_cli(tmp_path: Path) -> None:
    posts = SHARED / "reddit-top-2.5m" / "link_posts"
    if not posts.exists():
        pytest.skip(f"shared Reddit data not found at {posts}")
    run = tmp_path / "run"
    argv = ["--quiet", "run", "walk", "--config", str(Path(__file__).resolve().parents[2] / "configs" / "reddit.toml")]
    argv += ["--run-dir", str(run), "--set", "ingest.reddit.max_posts=20000", "--set", f"ingest.reddit.posts={posts}"]
    argv += ["--set", f"ingest.reddit.subreddits={SHARED / 'reddit-top-2.5m' / 'subreddits.parquet'}"]
    argv += ["--set", "content.text_encoder=hashing", "--set", "content.image_encoder=none"]
    argv += ["--set", "train.dims=[16, 64]"]  # the hashed text targets are 64 wide
    assert main(argv) == 0
    result = _check_run(run)
    graph, walk = result["graph"], result["walk"]
    assert isinstance(graph, dict) and isinstance(walk, dict)
    assert graph["counts"]["edges_pin_board"] > 0 and graph["counts"]["edges_page_domain"] > 0
    assert walk["counts"]["pages_with_neighbours"] > 0.9 * walk["counts"]["pages"]
