"""Retrieval over a run directory: top-k pins for a page URL, top-k pages for a pin.

Both sides live in the trained model's space at its largest dim: pages by their stored embeddings,
pins by their target vectors rotated into that space. Scores are exact cosines (see ``ann``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage import log
from linksage.config.store import StoreConfig
from linksage.errors import InputError, LinksageError
from linksage.search.indices import pages_index, pins_index, store_path
from linksage.store.fingerprint import page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix


@dataclass(frozen=True)
class Hit:
    rank: int
    id: str  # pin_id, or the page's canonical URL
    score: float  # cosine
    text: str = ""  # the pin's text (pins only)


def search_pins_for_page(run_dir: Path | str, url: str, k: int = 10, cfg: StoreConfig | None = None) -> list[Hit]:
    """Top-``k`` pins for the page at ``url`` (canonicalised first), by its stored embedding."""
    from linksage.ingest.urls import canonicalise

    run_dir, cfg = Path(run_dir), cfg or StoreConfig()
    canonical, reason = canonicalise(url)
    if canonical is None:
        raise LinksageError(f"{url!r} is not a usable URL: {reason}")
    store = EmbeddingStore.open(store_path(run_dir, cfg))
    row = store.get(page_ids([canonical]).tolist())
    if row.num_rows == 0:
        raise LinksageError(f"page {canonical} (from {url!r}) is not in the store at {store.path}")
    _check_model(row["model_version"][0].as_py(), run_dir, store.path)
    query = embedding_matrix(row["embedding"], store.dim)  # (1, dim)
    scores, pins = pins_index(run_dir, store.path, cfg.index).search(query, k)
    found = pins[0][np.isfinite(scores[0])]
    table = _pins_table(run_dir).take(pa.array(found))
    texts = table["text"].to_pylist() if "text" in table.column_names else [""] * len(found)
    return [
        Hit(rank=i + 1, id=str(pin_id), score=float(s), text=text or "")
        for i, (pin_id, s, text) in enumerate(zip(table["pin_id"].to_pylist(), scores[0], texts, strict=False))
    ]


def search_pages_for_pin(run_dir: Path | str, pin_id: str, k: int = 10, cfg: StoreConfig | None = None) -> list[Hit]:
    """Top-``k`` pages of the store's newest version for the pin ``pin_id``, by the pin's target vector."""
    from linksage.train.infer import load_model

    run_dir, cfg = Path(run_dir), cfg or StoreConfig()
    pins = _pins_table(run_dir)
    matches = np.flatnonzero(pc.equal(pins["pin_id"], pa.scalar(str(pin_id))).to_numpy(zero_copy_only=False))
    if len(matches) == 0:
        raise LinksageError(f"pin {pin_id!r} is not in {run_dir / 'ingest' / 'pins.parquet'}")
    targets = np.load(run_dir / "content" / "pin_target.npy", mmap_mode="r")
    query = load_model(run_dir / "train").pin_vectors(targets[matches[:1]])  # (1, dim)
    store = EmbeddingStore.open(store_path(run_dir, cfg))
    scores, ids = pages_index(store, cfg.index).search(query, k)
    found = ids[0][np.isfinite(scores[0])]  # page ids are signed hashes: -1 is no sentinel here
    rows = store.get(found.tolist())
    url_of = dict(zip(rows["page_id"].to_pylist(), rows["url"].to_pylist(), strict=True))
    if len(url_of) < len(found):
        log.event("[search] some indexed pages are missing from the store", missing=len(found) - len(url_of))
    return [
        Hit(rank=i + 1, id=url_of.get(int(pid), f"page_id:{int(pid)}"), score=float(s))
        for i, (pid, s) in enumerate(zip(found, scores[0], strict=False))
    ]


def _check_model(stored: str, run_dir: Path, store: Path) -> None:
    """Pins are put in the current model's space: the page must have been embedded by that model."""
    from linksage.embed.batch import model_version

    current = model_version(run_dir / "train")
    if stored != current:
        raise LinksageError(
            f"the page's embedding in {store} comes from model {stored}, but {run_dir / 'train'} holds model "
            f"{current}; run `linksage run embed --run-dir {run_dir}` first"
        )


def _pins_table(run_dir: Path) -> pa.Table:
    path = run_dir / "ingest" / "pins.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `linksage run ingest --run-dir {run_dir}` first")
    names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[c for c in ("pin_idx", "pin_id", "text") if c in names])
    if "pin_idx" in names:  # row i must be pin_idx i: index ids are row numbers
        idx = table["pin_idx"].to_numpy()
        if not np.array_equal(idx, np.arange(len(idx))):
            bad = int(np.flatnonzero(idx != np.arange(len(idx)))[0])
            raise InputError("pin_idx must be 0..n-1 in row order", file=path, row=bad, value=int(idx[bad]))
    return table


def search(
    run_dir: Path | str, *, url: str | None = None, pin: str | None = None, k: int = 10, cfg: StoreConfig | None = None
) -> list[Hit]:
    """What ``linksage search`` does: exactly one of ``url`` (top pins) or ``pin`` (top pages)."""
    if (url is None) == (pin is None):
        raise LinksageError("search: give exactly one of --url (pins for a page) or --pin (pages for a pin)")
    if k <= 0:
        raise LinksageError(f"search: -k must be positive, got {k}")
    if url is not None:
        return search_pins_for_page(run_dir, url, k, cfg)
    assert pin is not None
    return search_pages_for_pin(run_dir, pin, k, cfg)


def format_hits(hits: list[Hit]) -> str:
    """One line per hit: rank, cosine, id (and the pin's text, shortened)."""
    lines = []
    for h in hits:
        text = f"  {h.text[:80]}" if h.text else ""
        lines.append(f"{h.rank:>4}  {h.score:.4f}  {h.id}{text}")
    return "\n".join(lines)
