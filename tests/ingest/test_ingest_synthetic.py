"""The synthetic world: reproducible, sized as asked, memory bounded by part size, and carrying planted
topic signal in the graph that the pages' own content lacks (checked by invariants and statistics)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from linksage.cli import main
from linksage.config.ingest import SyntheticSource
from linksage.ingest.synthetic import _World, generate_world

CFG = SyntheticSource(n_links=6_000, part_rows=2_000, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    generate_world(CFG, tmp_path / "a")
    generate_world(CFG, tmp_path / "b")
    generate_world(replace(CFG, seed=4), tmp_path / "c")
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_sizes_and_parts(tmp_path: Path) -> None:
    files = generate_world(CFG, tmp_path)
    parts = sorted(files.links.glob("*.parquet"))
    assert len(parts) == 3  # n_links / part_rows
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in parts) == CFG.n_links
    world = _World(CFG)
    assert pq.read_table(files.pins).num_rows == world.n_pins
    assert pq.read_table(files.pages).num_rows == world.n_pages
    assert pq.read_table(files.board_meta).num_rows == world.n_boards


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The canonical tables of a 12,000-link world, built by the ingest stage through the CLI."""
    run_dir = tmp_path_factory.mktemp("synthetic") / "run"
    settings = ["ingest.synthetic.n_links=12000", "ingest.synthetic.part_rows=5000", "ingest.synthetic.seed=1"]
    code = main(["--quiet", "run", "ingest", "--run-dir", str(run_dir)] + [a for s in settings for a in ("--set", s)])
    assert code == 0
    return run_dir / "ingest"


def _table(folder: Path, name: str) -> dict[str, np.ndarray]:
    table = pq.read_table(folder / f"{name}.parquet")
    return {c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names}


def test_canonicalisation_merges_every_url_variant(ingested: Path) -> None:
    counts = json.loads((ingested / "manifest.json").read_text())["counts"]
    world = _World(replace(SyntheticSource(), n_links=12_000, part_rows=5_000, seed=1))
    assert counts["pages"] == world.n_pages  # raw variants of one page became one page
    assert counts["pages_content_only"] == 0  # the pages table's variants matched the links' pages
    assert counts["duplicate_links_merged"] == sum(n_dup for _, _, n_dup in world.parts)
    assert counts["truth"] == counts["pages"] and counts["pins_without_links"] == 0


def test_targets_depend_on_topic(ingested: Path) -> None:
    pins, links, truth = _table(ingested, "pins"), _table(ingested, "links"), _table(ingested, "truth")
    topic = np.empty(len(truth["page_idx"]), dtype=np.int64)
    topic[truth["page_idx"]] = truth["topic"]
    emb = np.stack(pins["embedding"]).astype(np.float32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    pin_topic = topic[links["page_idx"]]
    x = emb[links["pin_idx"]]
    centroids = np.stack([x[pin_topic == t].mean(0) for t in range(16)])
    nearest = np.argmax(x @ centroids.T, axis=1)
    assert (nearest == pin_topic).mean() > 0.85  # link_noise 0.05: most pins share their page's topic


def test_boards_are_mostly_single_topic(ingested: Path) -> None:
    board_pins, links, truth = _table(ingested, "board_pins"), _table(ingested, "links"), _table(ingested, "truth")
    topic = dict(zip(truth["page_idx"], truth["topic"], strict=True))
    pin_topic = {int(p): topic[g] for p, g in zip(links["pin_idx"], links["page_idx"], strict=True)}
    by_board: dict[int, Counter[int]] = defaultdict(Counter)
    for b, p in zip(board_pins["board_idx"], board_pins["pin_idx"], strict=True):
        by_board[int(b)][pin_topic[int(p)]] += 1
    majority = sum(c.most_common(1)[0][1] for c in by_board.values()) / sum(sum(c.values()) for c in by_board.values())
    assert majority > 0.75  # board_purity 0.85, less link noise


def test_content_is_noisy_missing_and_opaque_at_the_configured_rates(ingested: Path) -> None:
    pages = _table(ingested, "pages")
    n = len(pages["url"])
    missing = np.array([t is None for t in pages["title"]])
    opaque = np.array(["/p/" in u for u in pages["url"]])
    sd = np.sqrt(0.25 / n)
    assert abs(missing.mean() - 0.2) < 5 * sd
    assert abs(opaque.mean() - 0.4) < 5 * sd
    assert (missing & opaque).sum() > 0  # pages whose content says nothing at all


def test_time_spread_supports_a_time_split(ingested: Path) -> None:
    pins, pages = _table(ingested, "pins"), _table(ingested, "pages")
    start, end = 1356998400, 1372636800  # 2013-01-01, 2013-07-01
    assert pins["created_at"].min() >= start and pins["created_at"].max() < end
    first = pages["first_seen"].astype(np.int64)
    late = (first >= start + 2 * (end - start) // 3).mean()
    assert 0.25 < late < 0.42  # pages are born uniformly over the range


def test_graph_carries_topic_that_content_lacks(ingested: Path) -> None:
    """Pages with no content and an opaque URL: their board neighbourhood still names their topic."""
    pages, links, truth = _table(ingested, "pages"), _table(ingested, "links"), _table(ingested, "truth")
    board_pins = _table(ingested, "board_pins")
    topic = np.empty(len(pages["url"]), dtype=np.int64)
    topic[truth["page_idx"]] = truth["topic"]
    blind = np.flatnonzero(
        np.array([t is None and "/p/" in u for t, u in zip(pages["title"], pages["url"], strict=True)])
    )
    pins_of_page: dict[int, list[int]] = defaultdict(list)
    page_of_pin: dict[int, list[int]] = defaultdict(list)
    for p, g in zip(links["pin_idx"], links["page_idx"], strict=True):
        pins_of_page[int(g)].append(int(p))
        page_of_pin[int(p)].append(int(g))
    board_of_pin = dict(zip(board_pins["pin_idx"].tolist(), board_pins["board_idx"].tolist(), strict=True))
    pins_of_board: dict[int, list[int]] = defaultdict(list)
    for p, b in board_of_pin.items():
        pins_of_board[b].append(p)
    hits = 0
    for g in blind:
        votes: Counter[int] = Counter()
        for p in pins_of_page[int(g)]:
            for q in pins_of_board[board_of_pin[p]]:
                votes.update(int(topic[h]) for h in page_of_pin[q] if h != g)
        hits += bool(votes) and votes.most_common(1)[0][0] == topic[g]
    assert len(blind) > 100
    assert hits / len(blind) > 0.7  # page -> pin -> board -> pin -> page recovers the planted topic


def test_near_duplicates_link_to_other_pages_of_the_same_topic(ingested: Path) -> None:
    from scipy import sparse

    pins, links, truth = _table(ingested, "pins"), _table(ingested, "links"), _table(ingested, "truth")
    topic = dict(zip(truth["page_idx"], truth["topic"], strict=True))
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(pins["text"]):
        for w in set(text.split()):
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pins["text"]), len(vocab)))
    x = sparse.diags(1 / np.sqrt(np.asarray(x.sum(1)).ravel())) @ x
    sim = sparse.triu(x @ x.T, k=1).tocoo()
    close = sim.data > 0.7
    page = dict(zip(links["pin_idx"].tolist(), links["page_idx"].tolist(), strict=True))
    pairs = [(page[int(a)], page[int(b)]) for a, b in zip(sim.row[close], sim.col[close], strict=True)]
    other_page = [(a, b) for a, b in pairs if a != b]
    expected = 0.1 * (len(pins["text"]) - len(truth["page_idx"]))  # rate x pins beyond each page's first
    assert len(other_page) > 0.6 * expected
    assert np.mean([topic[a] == topic[b] for a, b in other_page]) > 0.9


def _peak_rss_mb(n_links: int, tmp_path: Path) -> float:
    code = (
        "import resource, sys; from pathlib import Path\n"
        "from linksage.config.ingest import SyntheticSource\n"
        "from linksage.ingest.synthetic import generate_world\n"
        f"generate_world(SyntheticSource(n_links={n_links}, part_rows=5_000), Path(sys.argv[1]))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / str(n_links))], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


def test_memory_is_bounded_by_part_size(tmp_path: Path) -> None:
    small, large = _peak_rss_mb(15_000, tmp_path), _peak_rss_mb(75_000, tmp_path)
    assert large < small + 25  # five times the links, same part size: about the same peak


def test_board_spread_gives_each_board_a_theme_and_zero_changes_nothing(tmp_path: Path) -> None:
    generate_world(CFG, tmp_path / "plain")
    generate_world(replace(CFG, board_spread=0.0), tmp_path / "zero")
    generate_world(replace(CFG, board_spread=1.0), tmp_path / "themed")
    plain, zero, themed = _files(tmp_path / "plain"), _files(tmp_path / "zero"), _files(tmp_path / "themed")
    assert plain == zero and plain != themed

    def same_board_gain(root: Path) -> float:
        """Mean cosine of pin pairs on one board minus that of pairs of one topic on different boards."""
        pins, boards = pq.read_table(root / "pins"), pq.read_table(root / "boards")
        ids, vectors = pins["pin_id"].to_pylist(), pins["embedding"].to_pylist()
        emb = {p: np.asarray(e, np.float32) for p, e in zip(ids, vectors, strict=True)}
        board_of = dict(zip(boards["pin_id"].to_pylist(), boards["board_id"].to_pylist(), strict=True))
        topic_of = {b: int(b[1:]) % CFG.n_topics for b in set(board_of.values())}  # board b<i> has topic i % T
        by_board: dict[str, list[np.ndarray]] = defaultdict(list)
        for p, b in board_of.items():
            by_board[b].append(emb[p])
        same, other = [], []
        boards_by_topic: dict[int, list[str]] = defaultdict(list)
        for b, vecs in by_board.items():
            if len(vecs) >= 2:
                same.append(float(vecs[0] @ vecs[1]))
                boards_by_topic[topic_of[b]].append(b)
        for bs in boards_by_topic.values():
            for b1, b2 in itertools.pairwise(bs):
                other.append(float(by_board[b1][0] @ by_board[b2][0]))
        return float(np.mean(same) - np.mean(other))

    assert same_board_gain(tmp_path / "themed") > same_board_gain(tmp_path / "plain") + 0.15
