"""Training pairs (page, positive pin) from cohesive links, the split by page, and the no-leakage check.

The split is by page: a page's pairs all land in one of train / validation / test. A time split trains
on pages first seen before ``split_date`` and tests on those first seen on or after it; its training
pairs also drop pins created on or after that date, so nothing from the test period feeds training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from linksage.config.train import TrainConfig, parse_date
from linksage.errors import InputError, LinksageError

UNUSED, TRAIN, VAL, TEST = -1, 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "validation", TEST: "test"}

UNKNOWN_TIME = np.iinfo(np.int64).min  # a null first_seen / created_at


class LeakageError(LinksageError):
    """A page's evaluation data reached its training data or its inputs."""


@dataclass(frozen=True)
class Pairs:
    page: np.ndarray  # (n,) int32 page_idx
    pin: np.ndarray  # (n,) int32 pin_idx

    def __len__(self) -> int:
        return len(self.page)

    def select(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.page[keep], self.pin[keep])


def positive_pairs(indptr: np.ndarray, indices: np.ndarray) -> Pairs:
    """Every (page, pin) edge of the cohesion-filtered page->pin CSR, in CSR order."""
    n_pages = len(indptr) - 1
    page = np.repeat(np.arange(n_pages, dtype=np.int32), np.diff(indptr))
    return Pairs(page, np.asarray(indices, dtype=np.int32))


def split_pages(
    degree: np.ndarray, cfg: TrainConfig, first_seen: np.ndarray | None = None, *, pages_file: str = "pages.parquet"
) -> np.ndarray:
    """int8 (n_pages,): 0 train, 1 validation, 2 test, -1 unused (no positive pin, or outside the time window).

    ``first_seen`` (n_pages,) int64 unix seconds, with ``np.iinfo(np.int64).min`` for unknown, is needed by
    the time split only.
    """
    n_pages = len(degree)
    split = np.full(n_pages, UNUSED, dtype=np.int8)
    usable = np.flatnonzero(degree > 0)
    rng = np.random.default_rng(cfg.seed)
    if cfg.split == "random":
        order = rng.permutation(usable)
        n_val = round(len(order) * cfg.val_fraction)
        n_test = round(len(order) * cfg.test_fraction)
        split[order[:n_val]] = VAL
        split[order[n_val : n_val + n_test]] = TEST
        split[order[n_val + n_test :]] = TRAIN
        return split
    if first_seen is None:
        raise InputError('train.split = "time" needs the first_seen column', file=pages_file, column="first_seen")
    known = first_seen[usable] != np.iinfo(np.int64).min
    if usable.size and not known.any():
        raise InputError(
            'train.split = "time" needs first_seen dates, but every linked page has none '
            "(do the pins have created_at?)",
            file=pages_file,
            column="first_seen",
        )
    usable = usable[known]
    cutoff = int(parse_date("split_date", cfg.split_date).timestamp())
    end = int(parse_date("split_end", cfg.split_end).timestamp()) if cfg.split_end else None
    seen = first_seen[usable]
    is_before = seen < cutoff
    before = usable[is_before]
    after = usable[~is_before & (seen < end if end is not None else True)]
    if cfg.val_split == "latest":  # the pages first seen last before the cut-off (ties: by page index)
        order = before[np.argsort(-seen[is_before], kind="stable")]
    else:
        order = rng.permutation(before)
    n_val = round(len(order) * cfg.val_fraction)
    split[order[:n_val]] = VAL
    split[order[n_val:]] = TRAIN
    split[after] = TEST
    return split


def pairs_of(pairs: Pairs, split: np.ndarray, which: int) -> Pairs:
    return pairs.select(split[pairs.page] == which)


def drop_future_pins(pairs: Pairs, pin_created_at: np.ndarray, cutoff: int) -> tuple[Pairs, int]:
    """Training pairs whose pin was created before ``cutoff`` (unix s; unknown dates are kept)."""
    created = pin_created_at[pairs.pin]
    keep = created < cutoff
    return pairs.select(keep), int((~keep).sum())


def assert_no_leakage(
    split: np.ndarray,
    by_split: dict[int, Pairs],
    *,
    first_seen: np.ndarray | None = None,
    pin_created_at: np.ndarray | None = None,
    cutoff: int | None = None,
) -> None:
    """Raise ``LeakageError`` unless every split's pairs belong to that split's pages only.

    With a time split (``cutoff``) also: training pages were first seen before the cutoff and training
    pairs use no pin created at or after it. Model inputs are page-indexed content only (checked by
    ``linksage.train.features.PageFeatures``), so a page's positive pins never feed its own inputs.
    """
    for which, pairs in by_split.items():
        wrong = np.flatnonzero(split[pairs.page] != which)
        if wrong.size:
            i = int(wrong[0])
            raise LeakageError(
                f"{SPLIT_NAMES[which]} pair {i} (page {int(pairs.page[i])}, pin {int(pairs.pin[i])}) belongs to a "
                f"page of split {int(split[pairs.page[i]])}"
            )
    if cutoff is None:
        return
    train = by_split.get(TRAIN)
    if train is None:
        return
    if first_seen is not None:
        late = np.flatnonzero(first_seen[train.page] >= cutoff)
        if late.size:
            p = int(train.page[late[0]])
            raise LeakageError(f"training page {p} was first seen at {int(first_seen[p])}, after the cutoff {cutoff}")
    if pin_created_at is not None:
        late = np.flatnonzero(pin_created_at[train.pin] >= cutoff)
        if late.size:
            q = int(train.pin[late[0]])
            raise LeakageError(f"training pin {q} was created at {int(pin_created_at[q])}, after the cutoff {cutoff}")


def time_column(path: Path, index: str, column: str, n: int) -> np.ndarray | None:
    """(n,) int64 unix seconds by index, UNKNOWN_TIME where null; None when the column is absent."""
    schema = pq.read_schema(path)
    if column not in schema.names:
        return None
    table = pq.read_table(path, columns=[index, column])
    idx = table.column(index).to_numpy()
    values = table.column(column).fill_null(UNKNOWN_TIME).cast("int64").to_numpy()
    out = np.full(n, UNKNOWN_TIME, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        row = int(np.flatnonzero((idx < 0) | (idx >= n))[0])
        raise InputError(f"{index} must be in 0..{n - 1}", file=path, row=row, column=index, value=int(idx[row]))
    out[idx] = values
    return out
