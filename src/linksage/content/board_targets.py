"""Board-aware pin targets (``content.pin_target_boards``): a graph-aware stand-in for PinSage's targets.

On Pinterest the pins' existing embeddings (PinSage) already know the pins' boards; a pin target made from
the pin's own text does not. With a weight ``w`` > 0, each pin's target ``t(p)`` becomes

    unit( t(p) + w * unit( sum over p's boards b of mean_b ) ),   mean_b = mean of t(q) over b's eligible pins q

(with ``content.pin_target_boards_centred``, each mean_b less the mean of every eligible pin's target: the
part all boards share, which otherwise pulls every target toward one direction)

where the eligible pins are those created before ``content.pin_target_boards_before`` (all pins when it is
empty) that have a target of their own: under a time split, no test-period pin's content enters any target
through a board's mean. A pin whose boards hold no eligible pin keeps ``t(p)``, and a pin with no target
(a zero row) stays without one. The means are rounded to float16 once, and those rounded means make the
targets, here and on an incremental day alike. The boards' means are written beside the targets
(``board_target_mean.npy``) so that an incremental day gives its new pins the same treatment against the
same means (a board new that day has none: its pins keep their own direction).

Sums are sparse-times-dense products in float64 over chunks of pins (bounded memory, a fixed summation
order: the same inputs give the same bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from linksage.config import ConfigError
from linksage.config.train import TrainConfig, parse_date
from linksage.graph.csr import CSR, csr_from_edges, index_column
from linksage.train.pin_means import eligible_pins

MEANS_FILE = "board_target_mean.npy"


def cutoff_seconds(before: str, train: TrainConfig) -> int | None:
    """Unix seconds of ``content.pin_target_boards_before`` (None = every pin is eligible). Refuses a cut-off
    that would let a time split's test-period pins into the training targets."""
    cut = int(parse_date("pin_target_boards_before", before, section="content").timestamp()) if before else None
    if train.split == "time":
        split = int(parse_date("split_date", train.split_date).timestamp())
        if cut is None or cut > split:
            raise ConfigError(
                f"content.pin_target_boards_before: must be on or before train.split_date ({train.split_date}) "
                f"under a time split, got {before!r}: a board's mean would read test-period pins"
            )
    return cut


def eligible(targets: np.ndarray, created_at: np.ndarray | None, before: int | None, chunk_rows: int) -> np.ndarray:
    """(n_pins,) bool: the pins whose targets enter the boards' means: those with a nonzero target, created
    before ``before`` (``train.pin_means.eligible_pins``: a pin of unknown time is left out under a cut-off,
    since it may be from the test period)."""
    out = eligible_pins(created_at, len(targets), before)
    for lo in range(0, len(targets), chunk_rows):
        out[lo : lo + chunk_rows] &= np.asarray(targets[lo : lo + chunk_rows]).any(axis=1)
    return out


def read_pin_boards(ingest: Path, n_pins: int) -> tuple[CSR, int]:
    """The pin -> board CSR of ``ingest/board_pins.parquet`` and the number of boards (``boards.parquet``);
    an index out of range (an upstream bug) is an error naming the file, row, column and value."""
    path = ingest / "board_pins.parquet"
    table = pq.read_table(path, columns=["pin_idx", "board_idx"])
    n_boards = pq.read_metadata(ingest / "boards.parquet").num_rows
    pins = index_column(table, "pin_idx", n_pins, path)
    boards = index_column(table, "board_idx", n_boards, path)
    return csr_from_edges(pins, boards, n_pins), n_boards


def board_target_means(
    targets: np.ndarray,
    pin_boards: CSR,
    n_boards: int,
    is_eligible: np.ndarray,
    chunk_rows: int,
    centre: bool = False,
) -> np.ndarray:
    """(n_boards, D) float16: each board's mean target over its eligible pins (zeros where it has none);
    with ``centre``, less the mean target of every eligible pin (what all boards share, so that what is
    left says which board). Each chunk of pins adds into the rows of only the boards it touches."""
    n_pins, dim = targets.shape
    indptr, indices = pin_boards
    sums = np.zeros((n_boards, dim), np.float64)
    counts = np.zeros(n_boards, np.int64)
    total = np.zeros(dim, np.float64)
    for lo in range(0, n_pins, chunk_rows):
        hi = min(lo + chunk_rows, n_pins)
        a, b = int(indptr[lo]), int(indptr[hi])
        pin = np.repeat(np.arange(hi - lo), np.diff(indptr[lo : hi + 1]))
        ok = np.asarray(is_eligible[lo:hi], dtype=bool)
        keep = ok[pin]
        touched, row = np.unique(np.asarray(indices[a:b], dtype=np.int64)[keep], return_inverse=True)
        member = sp.csr_matrix((np.ones(len(row)), (row, pin[keep])), shape=(len(touched), hi - lo))
        chunk = np.asarray(targets[lo:hi], dtype=np.float64)
        sums[touched] += member @ chunk
        counts[touched] += np.bincount(row, minlength=len(touched))
        total += chunk[ok].sum(axis=0)
    has = counts > 0
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=has[:, None])
    if centre and is_eligible.any():
        means[has] -= total / int(np.count_nonzero(is_eligible))
    return means.astype(np.float16)


def add_board_means(
    targets: np.ndarray, pin_boards: CSR, means: np.ndarray, weight: float, lo: int, hi: int, chunk_rows: int
) -> int:
    """Rewrite rows ``lo``..``hi``-1 of ``targets`` in place as board-aware targets (the module's formula)
    against ``means`` (a board past its rows, new since they were made, counts as having none). Returns how
    many rows changed (those with a target and some board that has a mean)."""
    changed = 0
    n_known = len(means)
    if n_known == 0:
        return 0
    indptr, indices = pin_boards
    means64 = np.asarray(means, dtype=np.float64)
    for start in range(lo, hi, chunk_rows):
        end = min(start + chunk_rows, hi)
        a, b = int(indptr[start]), int(indptr[end])
        cols = indices[a:b].astype(np.int64)
        data = (cols < n_known).astype(np.float64)  # boards new since the means were made count for nothing
        member = sp.csr_matrix(
            (data, np.minimum(cols, n_known - 1), indptr[start : end + 1] - a), shape=(end - start, n_known)
        )
        board_sum = member @ means64
        norms = np.linalg.norm(board_sum, axis=1, keepdims=True)
        own = np.asarray(targets[start:end], dtype=np.float64)
        has = (norms[:, 0] > 0) & own.any(axis=1)  # a pin with no target of its own stays without one
        mixed = own + weight * np.divide(board_sum, norms, out=np.zeros_like(board_sum), where=norms > 0)
        out_norms = np.linalg.norm(mixed, axis=1, keepdims=True)
        mixed = np.divide(mixed, out_norms, out=np.zeros_like(mixed), where=out_norms > 0)
        rows = np.flatnonzero(has)
        targets[start + rows] = mixed[rows].astype(targets.dtype)
        changed += len(rows)
    return changed
