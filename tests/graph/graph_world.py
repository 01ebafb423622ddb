"""Hand-built canonical tables (docs/artifacts.md, ingest/) and content vectors for the graph tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_ingest(
    folder: Path,
    *,
    n_pins: int,
    page_domains: list[int | None],
    links: list[tuple[int, int]],
    board_pins: list[tuple[int, int]] = (),  # type: ignore[assignment]
    n_boards: int = 0,
    n_domains: int = 0,
    cohesion: list[float | None] | None = None,
) -> Path:
    """The ingest tables the graph stage reads, with dense indices."""
    folder.mkdir(parents=True, exist_ok=True)
    i32 = pa.int32()
    pq.write_table(
        pa.table({"pin_idx": pa.array(range(n_pins), i32), "pin_id": [f"p{i}" for i in range(n_pins)],
                  "text": [""] * n_pins}),
        folder / "pins.parquet",
    )  # fmt: skip
    n_pages = len(page_domains)
    pq.write_table(
        pa.table({"page_idx": pa.array(range(n_pages), i32), "url": [f"https://x/{i}" for i in range(n_pages)],
                  "domain_idx": pa.array(page_domains, i32)}),
        folder / "pages.parquet",
    )  # fmt: skip
    coh = cohesion if cohesion is not None else [None] * len(links)
    pq.write_table(
        pa.table({"pin_idx": pa.array([a for a, _ in links], i32), "page_idx": pa.array([b for _, b in links], i32),
                  "cohesion": pa.array([np.nan if c is None else c for c in coh], pa.float32())}),
        folder / "links.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({"board_idx": pa.array(range(n_boards), i32), "board_id": [f"b{i}" for i in range(n_boards)],
                  "text": [""] * n_boards}),
        folder / "boards.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({"board_idx": pa.array([b for b, _ in board_pins], i32),
                  "pin_idx": pa.array([p for _, p in board_pins], i32)}),
        folder / "board_pins.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({"domain_idx": pa.array(range(n_domains), i32), "domain": [f"d{i}.com" for i in range(n_domains)]}),
        folder / "domains.parquet",
    )  # fmt: skip
    return folder


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float16)


def write_content(folder: Path, pin_text: np.ndarray, page_text: np.ndarray, pin_target: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "pin_text.npy", pin_text.astype(np.float16))
    np.save(folder / "page_text.npy", page_text.astype(np.float16))
    np.save(folder / "pin_target.npy", pin_target.astype(np.float16))
    return folder
