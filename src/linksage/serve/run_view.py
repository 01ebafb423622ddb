"""What the server reads from the run directory's stages, loaded once per set of stage manifests.

Every part is optional: a run directory may hold only a model and pins (a store filled elsewhere), and
a route that needs a missing part answers 503 naming the stage to run (``RunSnapshot.need``).

- ``model``, ``pins`` and the pins' ANN index (``linksage.search.indices.pins_index``): train, content, ingest
- ``pages``: canonical URLs, domains, and crawled content read one row group at a time: ingest
- ``walks``: each page's neighbour pages with visit counts: walk
- ``graph``: the memory-mapped CSRs, for walks from a new page and a page's own pins: graph
- ``evaluation``: metrics.json and the plots of the latest evaluation: evaluate
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from linksage import log
from linksage.config._load import build
from linksage.config.content import ContentConfig
from linksage.config.store import IndexConfig
from linksage.config.walk import WalkConfig
from linksage.content.text import TextEncoder
from linksage.errors import LinksageError
from linksage.rundir import RunDir
from linksage.search.ann import AnnIndex
from linksage.serve.errors import Unavailable
from linksage.serve.ids import NUMBA_LOCK, page_id
from linksage.store.fingerprint import page_ids
from linksage.train.infer import LinkSageModel
from linksage.walk.pixie import WalkGraph

STAGES = ("ingest", "content", "graph", "walk", "train", "evaluate")
CONTENT_COLUMNS = ("title", "description", "body", "images", "fetched_at", "first_seen")


def run_keys(root: Path) -> dict[str, str | None]:
    """The manifest key of each stage the server reads (None: not completed): a change means reload."""
    rd = RunDir(root)
    keys: dict[str, str | None] = {}
    for stage in STAGES:
        try:
            manifest = rd.manifest(stage)
        except (OSError, ValueError):  # a manifest being replaced right now: read it next time
            manifest = None
        keys[stage] = str(manifest.get("key")) if manifest else None
    return keys


@dataclass(frozen=True)
class Pins:
    ids: list[str]  # by pin_idx
    text: list[str]
    rows: dict[str, int]  # pin_id -> pin_idx
    targets: np.ndarray  # (n_pins, D_target), memory-mapped content/pin_target.npy

    @classmethod
    def load(cls, root: Path) -> Pins:
        path = root / "ingest" / "pins.parquet"
        names = ds.dataset(path, format="parquet").schema.names
        table = pq.read_table(path, columns=[c for c in ("pin_id", "text") if c in names])
        ids = [str(x) for x in table["pin_id"].to_pylist()]
        text = [t or "" for t in table["text"].to_pylist()] if "text" in names else [""] * len(ids)
        targets = np.load(root / "content" / "pin_target.npy", mmap_mode="r")
        if len(targets) != len(ids):
            raise LinksageError(f"{root / 'content' / 'pin_target.npy'} has {len(targets)} rows, {path} {len(ids)}")
        return cls(ids=ids, text=text, rows={pin: i for i, pin in enumerate(ids)}, targets=targets)


class RunPages:
    """The run's pages: canonical URL -> page_idx by hash map, domains, and crawled content on demand."""

    def __init__(self, root: Path) -> None:
        path = root / "ingest" / "pages.parquet"
        table = pq.read_table(path, columns=["url", "domain_idx"])
        self.path = path
        self.urls: pa.Array = table["url"].combine_chunks()
        self.domain_idx = table["domain_idx"].to_numpy(zero_copy_only=False).astype(np.int64)
        with NUMBA_LOCK:
            ids = page_ids(self.urls).tolist()
        self.rows: dict[int, int] = dict(zip(ids, range(len(ids)), strict=True))
        domains = pq.read_table(root / "ingest" / "domains.parquet", columns=["domain"])["domain"].to_pylist()
        self.domains: list[str] = [str(d) for d in domains]
        self.domain_rows = {d: i for i, d in enumerate(self.domains)}
        # crawled content is read by row group (page_idx = row number), a few groups cached
        self._groups: list[tuple[Path, int, int]] = []  # (file, row group, first row)
        start = 0
        files = (
            sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_"))) if path.is_dir() else [path]
        )
        for file in files:
            meta = pq.ParquetFile(file).metadata
            for g in range(meta.num_row_groups):
                self._groups.append((file, g, start))
                start += meta.row_group(g).num_rows
        self._starts = [s for _, _, s in self._groups]
        self._names = set(pq.read_schema(files[0]).names) if files else set()
        self._cache: OrderedDict[tuple[Path, int], pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    def find(self, canonical: str) -> int | None:
        row = self.rows.get(page_id(canonical))
        if row is None or self.urls[row].as_py() != canonical:
            return None
        return row

    def url(self, page_idx: int) -> str:
        return str(self.urls[page_idx].as_py())

    def domain(self, page_idx: int) -> str | None:
        d = int(self.domain_idx[page_idx])
        return self.domains[d] if 0 <= d < len(self.domains) else None

    def content(self, page_idx: int) -> dict[str, Any]:
        """Title, description, body, images, fetched_at and first_seen of one page (absent columns: None)."""
        columns = [c for c in CONTENT_COLUMNS if c in self._names]
        if not columns or not self._groups:
            return {c: None for c in CONTENT_COLUMNS}
        at = bisect.bisect_right(self._starts, page_idx) - 1
        file, group, start = self._groups[at]
        with self._lock:
            table = self._cache.get((file, group))
            if table is None:
                table = pq.ParquetFile(file).read_row_group(group, columns=columns)
                self._cache[(file, group)] = table
                if len(self._cache) > 4:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end((file, group))
        row = table.slice(page_idx - start, 1).to_pylist()[0]
        return {c: row.get(c) for c in CONTENT_COLUMNS}


@dataclass(frozen=True)
class Evaluation:
    folder: Path
    metrics: dict[str, Any]
    plots: tuple[str, ...]  # file names in folder/plots

    @classmethod
    def load(cls, folder: Path) -> Evaluation:
        metrics = json.loads((folder / "metrics.json").read_text())
        plots_dir = folder / "plots"
        plots = tuple(sorted(p.name for p in plots_dir.glob("*.png"))) if plots_dir.is_dir() else ()
        return cls(folder=folder, metrics=metrics, plots=plots)

    def histogram(self) -> str | None:
        """The score histogram at the largest dim (``scores_dim<d>.png``), if the report drew one."""
        scored = [(int(p[len("scores_dim") : -len(".png")]), p) for p in self.plots if _is_scores_plot(p)]
        return max(scored)[1] if scored else None


def _is_scores_plot(name: str) -> bool:
    return name.startswith("scores_dim") and name.endswith(".png") and name[len("scores_dim") : -4].isdigit()


@dataclass
class RunSnapshot:
    root: Path
    keys: dict[str, str | None]
    model: LinkSageModel | None = None
    model_version: str | None = None
    pins: Pins | None = None
    pins_index: AnnIndex | None = None
    pages: RunPages | None = None
    walks: tuple[np.ndarray, np.ndarray] | None = None  # neighbours (n, K) int32 -1 padded, visits (n, K)
    graph: WalkGraph | None = None
    walk_cfg: WalkConfig | None = None
    content_cfg: ContentConfig | None = None
    evaluation: Evaluation | None = None
    missing: dict[str, str] = field(default_factory=dict)  # part -> why it is absent
    load_s: float = 0.0
    _encoder: TextEncoder | None = None
    _encoder_lock: threading.Lock = field(default_factory=threading.Lock)
    _pin_means: dict[int | None, Any] = field(default_factory=dict)  # cut-off -> (targets, eligible, totals)
    _pin_means_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, root: Path, store_path: Path, index_cfg: IndexConfig) -> RunSnapshot:
        """Every part of the run that is there; the reason for each that is not goes to ``missing``."""
        t0 = time.perf_counter()
        snap = cls(root=root, keys=run_keys(root))
        done = {stage for stage, key in snap.keys.items() if key is not None}

        def part(name: str, stages: tuple[str, ...], load: Any) -> None:
            absent = [s for s in stages if s not in done]
            if absent:
                snap.missing[name] = f"stage {absent[0]!r} has not completed in {root}; run `linksage run {absent[0]}`"
                return
            try:
                load()
            except Exception as exc:  # one broken part (e.g. a model.pt of older code) leaves the rest serving
                snap.missing[name] = f"{type(exc).__name__}: {exc}"
                log.event(f"[serve] {name} not loaded", reason=str(exc))

        part("model", ("train",), lambda: _load_model(snap))
        part("pins", ("ingest", "content"), lambda: setattr(snap, "pins", Pins.load(root)))
        if snap.model is not None and snap.pins is not None:
            part("pins_index", ("train", "content"), lambda: _load_pins_index(snap, store_path, index_cfg))
        else:
            snap.missing["pins_index"] = "needs the model (train) and the pins (ingest, content)"
        part("pages", ("ingest",), lambda: setattr(snap, "pages", RunPages(root)))
        part("walks", ("walk",), lambda: _load_walks(snap))
        part("graph", ("graph", "walk"), lambda: _load_graph(snap))
        part("content", ("content",), lambda: _load_content_cfg(snap))
        part("evaluation", ("evaluate",), lambda: setattr(snap, "evaluation", Evaluation.load(root / "evaluate")))
        snap.load_s = time.perf_counter() - t0
        log.event("[serve] run loaded", run=str(root), missing=sorted(snap.missing), seconds=round(snap.load_s, 2))
        return snap

    def need(self, name: str) -> Any:
        """The part ``name`` (an attribute), or ``Unavailable`` saying why it is absent."""
        value = getattr(self, name)
        if value is None:
            raise Unavailable(f"{name} is not available: {self.missing.get(name, 'not loaded')}")
        return value

    def text_encoder(self) -> TextEncoder:
        """The content stage's text encoder (as its manifest configures it), made on first use, on the CPU."""
        from linksage.content.text import create_text_encoder

        cfg: ContentConfig = self.need("content_cfg")
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = create_text_encoder(cfg, device="cpu")
            return self._encoder

    def pin_means_inputs(self, before: int | None) -> tuple[np.ndarray, np.ndarray, Any]:
        """The pin targets, which pins may enter pin means under the cut-off ``before``, and every board's
        ``board_totals``: read and summed on first use, then kept (a snapshot's files do not change)."""
        from linksage.train.features import eligible_targets
        from linksage.train.pin_means import board_totals

        with self._pin_means_lock:
            if before not in self._pin_means:
                targets, eligible = eligible_targets(self.root, before)
                graph: WalkGraph = self.need("graph")
                pin_board = graph.csr.get(("pin", "board"))
                totals = None if pin_board is None else board_totals(*pin_board, targets, eligible)
                self._pin_means[before] = (targets, eligible, totals)
            return self._pin_means[before]


def _load_model(snap: RunSnapshot) -> None:
    from linksage.embed.batch import model_version
    from linksage.train.infer import load_model

    snap.model = load_model(snap.root / "train")
    snap.model_version = model_version(snap.root / "train")


def _load_pins_index(snap: RunSnapshot, store_path: Path, index_cfg: IndexConfig) -> None:
    from linksage.search.indices import pins_index

    snap.pins_index = pins_index(snap.root, store_path, index_cfg)


def _load_walks(snap: RunSnapshot) -> None:
    folder = snap.root / "walk"
    neighbours = np.load(folder / "neighbours.npy", mmap_mode="r")
    visits = np.load(folder / "visits.npy", mmap_mode="r")
    if neighbours.shape != visits.shape:
        raise LinksageError(f"{folder}: neighbours {neighbours.shape} and visits {visits.shape} differ in shape")
    snap.walks = (neighbours, visits)


def _load_graph(snap: RunSnapshot) -> None:
    snap.graph = WalkGraph.from_dir(snap.root / "graph")
    manifest = RunDir(snap.root).manifest("walk") or {}
    snap.walk_cfg = build(WalkConfig, dict(manifest.get("config", {}).get("walk", {})), prefix="walk.")


def _load_content_cfg(snap: RunSnapshot) -> None:
    manifest = RunDir(snap.root).manifest("content") or {}
    snap.content_cfg = build(ContentConfig, dict(manifest.get("config", {}).get("content", {})), prefix="content.")
