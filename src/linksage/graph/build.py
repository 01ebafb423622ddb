"""The heterogeneous graph from the canonical tables and the content vectors.

Order of operations: cohesion filter on pin-page links -> near-duplicate pin clusters -> hub caps per
edge type (pin-page, pin-board, page-domain, pin-cluster; both sides) -> minimum-degree drop -> one CSR
per edge type and direction. Node indices stay ingest's indices: a dropped node keeps its index and
simply has no edges, so later stages index feature arrays directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from linksage.config.graph import GraphConfig
from linksage.errors import InputError
from linksage.graph import cohesion, near_duplicates, prune
from linksage.graph.csr import CSR, csr_pair, index_column, save_csr
from linksage.graph.schema import EDGE_TYPES, NODE_TYPES, UNDIRECTED

Edges = tuple[np.ndarray, np.ndarray]  # (a, b) int64 node indices of one undirected edge type


@dataclass
class GraphInputs:
    counts: dict[str, int]  # pin, page, board, domain
    link_pin: np.ndarray
    link_page: np.ndarray
    link_cohesion: np.ndarray  # float32, NaN = not given
    board: np.ndarray
    board_pin: np.ndarray
    page_domain: np.ndarray  # int64 (n_pages,), -1 = none
    pin_text: np.ndarray | None = None
    page_text: np.ndarray | None = None
    pin_target: np.ndarray | None = None


@dataclass
class Graph:
    counts: dict[str, int]  # nodes per type, cluster included
    edges: dict[tuple[str, str], Edges]  # per undirected edge type
    pin_cluster: np.ndarray  # int32 (n_pins,), -1 = no cluster edge
    link_scores: np.ndarray  # float32 per input link row, NaN = unknown
    link_kept: np.ndarray  # bool per input link row: in the graph
    tallies: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def csr(self) -> dict[tuple[str, str], CSR]:
        out: dict[tuple[str, str], CSR] = {}
        for (a, b), (ea, eb) in self.edges.items():
            out[(a, b)], out[(b, a)] = csr_pair(ea, eb, self.counts[a], self.counts[b])
        return out


def read_inputs(ingest_dir: Path, content_dir: Path | None = None) -> GraphInputs:
    """Read the columns the graph needs from ingest's tables (and content's vectors when present)."""
    counts = {
        "pin": _rows(ingest_dir / "pins.parquet"),
        "page": _rows(ingest_dir / "pages.parquet"),
        "board": _rows(ingest_dir / "boards.parquet", required=False),
        "domain": _rows(ingest_dir / "domains.parquet", required=False),
    }
    links = _read(ingest_dir / "links.parquet", ["pin_idx", "page_idx"], ("cohesion",))
    link_pin = index_column(links, "pin_idx", counts["pin"], ingest_dir / "links.parquet")
    link_page = index_column(links, "page_idx", counts["page"], ingest_dir / "links.parquet")
    if "cohesion" in links.column_names:
        given = links.column("cohesion").to_numpy(zero_copy_only=False).astype(np.float32)
    else:
        given = np.full(len(link_pin), np.nan, np.float32)
    bad = np.flatnonzero(~np.isnan(given) & ((given < 0) | (given > 1)))
    if len(bad):
        raise InputError(
            "cohesion must be in [0, 1] (or null)",
            file=ingest_dir / "links.parquet", row=int(bad[0]), column="cohesion", value=float(given[bad[0]]),
        )  # fmt: skip
    bp_path = ingest_dir / "board_pins.parquet"
    if Path.exists(bp_path):
        bp = _read(bp_path, ["board_idx", "pin_idx"])
        board = index_column(bp, "board_idx", counts["board"], bp_path)
        board_pin = index_column(bp, "pin_idx", counts["pin"], bp_path)
    else:
        board = board_pin = np.zeros(0, np.int64)
    pages = _read(ingest_dir / "pages.parquet", ["page_idx"], ("domain_idx",))
    _check_dense(pages, "page_idx", ingest_dir / "pages.parquet")
    if "domain_idx" in pages.column_names:
        page_domain = index_column(pages, "domain_idx", counts["domain"], ingest_dir / "pages.parquet", null=-1)
    else:
        page_domain = np.full(counts["page"], -1, np.int64)
    inputs = GraphInputs(counts, link_pin, link_page, given, board, board_pin, page_domain)
    if content_dir is not None:
        inputs.pin_text = _vectors(content_dir / "pin_text.npy", counts["pin"])
        inputs.page_text = _vectors(content_dir / "page_text.npy", counts["page"])
        inputs.pin_target = _vectors(content_dir / "pin_target.npy", counts["pin"])
    return inputs


def build_graph(inputs: GraphInputs, cfg: GraphConfig) -> Graph:
    """Filter, cluster, prune and assemble the graph (edge lists per undirected type)."""
    timings: dict[str, float] = {}
    tallies: dict[str, int] = {}
    metrics: dict[str, Any] = {}
    rng = np.random.default_rng(cfg.seed)
    n_links = len(inputs.link_pin)

    t = time.perf_counter()
    scores = cohesion.cohesion_scores(
        inputs.link_pin, inputs.link_page, inputs.link_cohesion, inputs.pin_target, inputs.page_text
    )
    cohesive = cohesion.keep_mask(scores.scores, cfg.cohesion_threshold)
    first = _first_occurrence(inputs.link_pin, inputs.link_page, inputs.counts["page"])
    tallies["links"] = n_links
    tallies["links_duplicate"] = int(n_links - first.sum())
    tallies["links_cohesion_removed"] = int((first & ~cohesive).sum())
    known = scores.scores[~np.isnan(scores.scores)]
    metrics["cohesion"] = {
        "given": scores.given,
        "computed": scores.computed,
        "unknown": scores.unknown,
        "threshold": cfg.cohesion_threshold,
        "quantiles": _quantiles(known),
    }
    link_rows = np.flatnonzero(first & cohesive)
    timings["cohesion_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if cfg.near_duplicates and inputs.pin_text is not None and inputs.pin_text.shape[0] == inputs.counts["pin"]:
        dups = near_duplicates.near_duplicate_clusters(
            inputs.pin_text,
            cfg.near_duplicate_threshold,
            k=cfg.near_duplicate_k,
            nprobe=cfg.near_duplicate_nprobe,
            exact_max=cfg.near_duplicate_exact_max,
            pca_dim=cfg.near_duplicate_pca,
            seed=cfg.seed,
            threads=cfg.threads,
            method=cfg.near_duplicate_method,
        )
        pin_cluster, n_clusters = dups.pin_cluster, dups.n_clusters
        metrics["near_duplicates"] = dups.stats
    else:
        pin_cluster, n_clusters = np.full(inputs.counts["pin"], -1, np.int32), 0
        metrics["near_duplicates"] = {"clusters": 0, "skipped": "off or no pin_text vectors"}
    timings["near_duplicates_s"] = time.perf_counter() - t
    counts = {**inputs.counts, "cluster": n_clusters}

    t = time.perf_counter()
    clustered = np.flatnonzero(pin_cluster >= 0)
    has_domain = np.flatnonzero(inputs.page_domain >= 0)
    pin_board = _dedupe(inputs.board_pin, inputs.board, counts["board"])
    edges: dict[tuple[str, str], Edges] = {
        ("pin", "page"): (inputs.link_pin[link_rows], inputs.link_page[link_rows]),
        ("pin", "board"): pin_board,
        ("page", "domain"): (has_domain.astype(np.int64), inputs.page_domain[has_domain]),
        ("pin", "cluster"): (clustered.astype(np.int64), pin_cluster[clustered].astype(np.int64)),
    }
    link_ids = link_rows  # input row of each pin-page edge, kept aligned through pruning
    for etype in UNDIRECTED:
        a, b = edges[etype]
        keep = prune.cap_hubs(a, b, cfg.hub_cap, rng)
        tallies[f"hub_capped_{etype[0]}_{etype[1]}"] = int((~keep).sum())
        edges[etype] = (a[keep], b[keep])
        if etype == ("pin", "page"):
            link_ids = link_ids[keep]
    degree = {node: np.zeros(counts[node], np.int64) for node in NODE_TYPES}
    for (a_type, b_type), (a, b) in edges.items():
        degree[a_type] += np.bincount(a, minlength=counts[a_type])
        degree[b_type] += np.bincount(b, minlength=counts[b_type])
    dropped = {node: prune.low_degree_nodes(degree[node], cfg.min_degree) for node in NODE_TYPES}
    for node in NODE_TYPES:
        tallies[f"min_degree_dropped_{node}"] = int(dropped[node].sum())
    for etype in UNDIRECTED:
        a, b = edges[etype]
        keep = ~dropped[etype[0]][a] & ~dropped[etype[1]][b]
        edges[etype] = (a[keep], b[keep])
        if etype == ("pin", "page"):
            link_ids = link_ids[keep]
    timings["prune_s"] = time.perf_counter() - t

    final_cluster = np.full(counts["pin"], -1, np.int32)
    pins, clusters = edges[("pin", "cluster")]
    final_cluster[pins] = clusters
    link_kept = np.zeros(n_links, bool)
    link_kept[link_ids] = True
    for (a_type, b_type), (a, _) in edges.items():
        tallies[f"edges_{a_type}_{b_type}"] = len(a)
    for node in NODE_TYPES:
        tallies[f"nodes_{node}"] = counts[node]
    return Graph(counts, edges, final_cluster, scores.scores, link_kept, tallies, metrics, timings)


def graph_metrics(graph: Graph, csr: dict[tuple[str, str], CSR]) -> dict[str, Any]:
    """Degree quantiles per edge type and direction, and connected components of the whole graph."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    degrees = {f"{s}__{d}": _degree_stats(np.diff(csr[(s, d)][0])) for s, d in EDGE_TYPES}
    offsets, total = {}, 0
    for node in NODE_TYPES:
        offsets[node], total = total, total + graph.counts[node]
    rows = [graph.edges[e][0] + offsets[e[0]] for e in UNDIRECTED]
    cols = [graph.edges[e][1] + offsets[e[1]] for e in UNDIRECTED]
    a, b = np.concatenate(rows), np.concatenate(cols)
    n_comp, labels = connected_components(
        coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(total, total)), directed=False
    )
    connected = np.zeros(total, bool)
    connected[a] = connected[b] = True
    sizes = np.bincount(labels[connected], minlength=n_comp)
    sizes = sizes[sizes > 0]
    page_labels = labels[offsets["page"] : offsets["page"] + graph.counts["page"]]
    page_connected = connected[offsets["page"] : offsets["page"] + graph.counts["page"]]
    largest = int(np.argmax(np.bincount(labels[connected]))) if connected.any() else -1
    components = {
        "components": len(sizes),
        "largest_nodes": int(sizes.max()) if len(sizes) else 0,
        "size_quantiles": _quantiles(sizes),
        "pages_in_largest": int(((page_labels == largest) & page_connected).sum()),
        "isolated_pages": int((~page_connected).sum()),
        "isolated_nodes": int((~connected).sum()),
    }
    return {"degrees": degrees, "components": components}


def write_graph(graph: Graph, csr: dict[tuple[str, str], CSR], out: Path) -> None:
    """The graph stage's artifacts (docs/artifacts.md, graph/)."""
    for (src, dst), arrays in csr.items():
        save_csr(out, src, dst, arrays)
    (out / "nodes.json").write_text(json.dumps(graph.counts, indent=2, sort_keys=True) + "\n")
    np.save(out / "pin_cluster.npy", graph.pin_cluster)
    np.save(out / "link_cohesion.npy", graph.link_scores)
    np.save(out / "link_kept.npy", graph.link_kept)


def _first_occurrence(pin: np.ndarray, page: np.ndarray, n_pages: int) -> np.ndarray:
    """Mask of the first row of each distinct (pin, page) pair."""
    key = pin * max(n_pages, 1) + page
    _, first = np.unique(key, return_index=True)
    mask = np.zeros(len(key), bool)
    mask[first] = True
    return mask


def _dedupe(a: np.ndarray, b: np.ndarray, n_b: int) -> Edges:
    if len(a) == 0:
        return a.astype(np.int64), b.astype(np.int64)
    keep = _first_occurrence(a, b, n_b)
    return a[keep], b[keep]


def _degree_stats(degree: np.ndarray) -> dict[str, Any]:
    return {"nodes": len(degree), "zero": int((degree == 0).sum()), **_quantiles(degree[degree > 0])}


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    q = np.quantile(x, [0.5, 0.9, 0.99])
    return {
        "mean": round(float(np.mean(x)), 4),
        "p50": round(float(q[0]), 4),
        "p90": round(float(q[1]), 4),
        "p99": round(float(q[2]), 4),
        "max": round(float(np.max(x)), 4),
    }


def _rows(path: Path, required: bool = True) -> int:
    if not Path.exists(path):
        if required:
            raise InputError("missing table (run the ingest stage first)", file=path)
        return 0
    return int(pq.read_table(path, columns=[]).num_rows)


def _read(path: Path, columns: list[str], optional: tuple[str, ...] = ()) -> pa.Table:
    if not Path.exists(path):
        raise InputError("missing table (run the ingest stage first)", file=path)
    names = set(pq.read_schema(path).names) if path.is_file() else set(pq.ParquetDataset(path).schema.names)
    for col in columns:
        if col not in names:
            raise InputError("missing column", file=path, column=col)
    return pq.read_table(path, columns=columns + [c for c in optional if c in names])


def _check_dense(table: pa.Table, column: str, path: Path) -> None:
    """Indices are row numbers: ``table[column][i] == i``."""
    values = table.column(column).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(values != np.arange(len(values)))
    if len(bad):
        row = int(bad[0])
        raise InputError(
            f"{column} must equal the row number {row}", file=path, row=row, column=column, value=values[row]
        )


def _vectors(path: Path, n_rows: int) -> np.ndarray | None:
    if not path.exists():
        return None
    x = np.load(path, mmap_mode="r")
    if x.ndim != 2 or x.shape[0] != n_rows:
        raise InputError(f"expected shape ({n_rows}, D), got {x.shape}", file=path)
    return x
