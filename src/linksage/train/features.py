"""Page feature tables held on the device, and the batched gather that builds encoder inputs by index.

Every table here is indexed by ``page_idx``: the encoder sees a page's own content and its neighbour
pages' content, never a pin's vector, so a page's positive pins cannot feed its inputs (the tables'
row counts are checked on construction). A batch is assembled with a handful of ``index_select`` calls
on the device: no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from linksage.config import ConfigError
from linksage.errors import InputError
from linksage.graph.csr import csr_first
from linksage.model import PageInputs
from linksage.train.pairs import time_column
from linksage.train.pin_means import (
    BoardMeans,
    BoardTotals,
    board_means,
    eligible_pins,
    page_means,
    page_pin_boards,
    shares_a_pin,
)


@dataclass
class PageFeatures:
    text: Tensor  # (N, Dt) float16
    image: Tensor  # (N, M, Di) float16: M image slots per page (1 = the mean image); Di may be 0
    image_mask: Tensor  # (N, M) bool
    nbr_image: Tensor  # (N, Di) float16: the mean image, used for a page seen as a neighbour
    has_image: Tensor  # (N,) bool
    degree_bucket: Tensor  # (N,) uint8
    neighbours: Tensor  # (N, K) int32, -1 = no neighbour; sorted by visits, descending
    log_visits: Tensor  # (N, K) float32, log1p(visit count)
    boards: Tensor | None = None  # (N, S) int32 board_idx, -1 = none: the page's boards, most pins first
    board_text: Tensor | None = None  # (n_boards, Dt) float16: the boards' text vectors (board-indexed)
    # board means, the page's own pins left out (train/pin_means.py ``BoardMeans``): (n_boards + 1, Dm)
    # float16 per board (the last row zeros, for empty slots), (n_fixed, Dm) corrected rows, and (N, S) int32
    # the corrected row each slot reads (-1 = its board's row)
    board_mean: Tensor | None = None
    board_mean_fixed: Tensor | None = None
    board_mean_at: Tensor | None = None
    # (N, Dm) float16: each page's mean pin target, read only as another page's neighbour (train/pin_means.py)
    page_mean: Tensor | None = None
    nbr_mean_ok: Tensor | None = None  # (N, K) bool: neighbour k's page_mean may be read (no pin shared)
    domain: Tensor | None = None  # (N,) int32 domain_idx, -1 = none
    n_domains: int = 0  # domains in the graph (the learned domain table's size)

    def __post_init__(self) -> None:
        n = self.text.shape[0]
        for name in ("image", "image_mask", "nbr_image", "has_image", "degree_bucket", "neighbours", "log_visits"):
            rows = getattr(self, name).shape[0]
            if rows != n:
                # page-indexed tables only: this is what keeps pins' vectors out of the inputs
                raise ValueError(f"page feature table {name!r} has {rows} rows, the page text table has {n}")
        if (self.boards is None) != (self.board_text is None):
            raise ValueError("page feature tables 'boards' and 'board_text' come together")
        if self.boards is not None and self.board_text is not None:
            if self.boards.shape[0] != n:
                raise ValueError(f"page feature table 'boards' has {self.boards.shape[0]} rows, expected {n}")
            if self.board_text.shape[1] != self.text.shape[1]:
                raise ValueError(f"board text dim {self.board_text.shape[1]} differs from the page text dim")
        parts = (self.board_mean, self.board_mean_fixed, self.board_mean_at)
        if any(x is not None for x in parts) and (self.boards is None or any(x is None for x in parts)):
            raise ValueError(
                "page feature tables 'board_mean', 'board_mean_fixed' and 'board_mean_at' come together, with 'boards'"
            )
        if self.board_mean_at is not None and self.boards is not None and self.board_mean_at.shape != self.boards.shape:
            got, want = tuple(self.board_mean_at.shape), tuple(self.boards.shape)
            raise ValueError(f"page feature table 'board_mean_at' has shape {got}, expected the boards' {want}")
        if (self.page_mean is None) != (self.nbr_mean_ok is None):
            raise ValueError("page feature tables 'page_mean' and 'nbr_mean_ok' come together")
        if (
            self.page_mean is not None
            and self.nbr_mean_ok is not None
            and (self.page_mean.shape[0] != n or self.nbr_mean_ok.shape != self.neighbours.shape)
        ):
            raise ValueError(
                f"page feature tables 'page_mean' {tuple(self.page_mean.shape)} and 'nbr_mean_ok' "
                f"{tuple(self.nbr_mean_ok.shape)}: expected {n} rows and the neighbours' shape "
                f"{tuple(self.neighbours.shape)}"
            )
        if self.domain is not None and self.domain.shape[0] != n:
            raise ValueError(f"page feature table 'domain' has {self.domain.shape[0]} rows, expected {n}")

    @property
    def n_pages(self) -> int:
        return int(self.text.shape[0])

    @property
    def text_dim(self) -> int:
        return int(self.text.shape[1])

    @property
    def image_dim(self) -> int:
        return int(self.image.shape[2])

    @property
    def image_slots(self) -> int:
        return int(self.image.shape[1])

    @property
    def k(self) -> int:
        return int(self.neighbours.shape[1])

    @property
    def board_slots(self) -> int:
        return 0 if self.boards is None else int(self.boards.shape[1])

    @property
    def n_boards(self) -> int:
        return 0 if self.board_text is None else int(self.board_text.shape[0])

    @property
    def nbr_mean_dim(self) -> int:
        return 0 if self.page_mean is None else int(self.page_mean.shape[1])

    @property
    def board_mean_dim(self) -> int:
        return 0 if self.board_mean is None else int(self.board_mean.shape[1])

    def gather(self, pages: Tensor, dtype: torch.dtype = torch.float32) -> PageInputs:
        """Encoder inputs of pages (B,) int64 on the device, in ``dtype``."""
        B, K = pages.shape[0], self.k
        nbr = self.neighbours.index_select(0, pages)  # (B, K) int32
        present = nbr >= 0
        flat = nbr.clamp_min(0).long().flatten()  # (B*K,) masked slots read page 0, never attended to
        board_text = board_ids = board_mask = board_mean = None
        if self.boards is not None and self.board_text is not None and self.board_slots:
            S = self.board_slots
            board_ids = self.boards.index_select(0, pages).long()  # (B, S)
            board_mask = board_ids >= 0
            rows = board_ids.clamp_min(0).flatten()  # masked slots read board 0, never attended to
            board_text = self.board_text.index_select(0, rows).view(B, S, self.text_dim).to(dtype)  # (B, S, Dt)
            board_mean = self._board_means(pages, board_ids, dtype)
        return PageInputs(
            self_text=self.text.index_select(0, pages).to(dtype),  # (B, Dt)
            self_images=self.image.index_select(0, pages).to(dtype),  # (B, M, Di)
            self_image_mask=self.image_mask.index_select(0, pages),  # (B, M)
            degree_bucket=self.degree_bucket.index_select(0, pages).long(),  # (B,)
            nbr_text=self.text.index_select(0, flat).view(B, K, self.text_dim).to(dtype),  # (B, K, Dt)
            nbr_image=self.nbr_image.index_select(0, flat).view(B, K, self.image_dim).to(dtype),  # (B, K, Di)
            nbr_mask=present,
            nbr_image_mask=self.has_image.index_select(0, flat).view(B, K),  # (B, K)
            nbr_log_visits=self.log_visits.index_select(0, pages).to(dtype),  # (B, K)
            board_text=board_text,
            board_ids=board_ids,
            board_mask=board_mask,
            board_mean=board_mean,
            nbr_mean=self._neighbour_means(pages, flat, dtype),
            domain_ids=None if self.domain is None else self.domain.index_select(0, pages).long(),
        )

    def _board_means(self, pages: Tensor, board_ids: Tensor, dtype: torch.dtype) -> Tensor | None:
        """(B, S, Dm): each slot's board mean (its corrected row where it has one; zeros for an empty slot)."""
        if self.board_mean is None or self.board_mean_fixed is None or self.board_mean_at is None:
            return None
        empty = self.board_mean.shape[0] - 1  # the zero row
        rows = torch.where(board_ids >= 0, board_ids, empty).flatten()
        means = self.board_mean.index_select(0, rows).view(*board_ids.shape, self.board_mean_dim)
        if self.board_mean_fixed.shape[0]:
            at = self.board_mean_at.index_select(0, pages).long()  # (B, S)
            fixed = self.board_mean_fixed.index_select(0, at.clamp_min(0).flatten()).view_as(means)
            means = torch.where((at >= 0).unsqueeze(-1), fixed, means)
        return means.to(dtype)

    def _neighbour_means(self, pages: Tensor, flat: Tensor, dtype: torch.dtype) -> Tensor | None:
        """(B, K, Dm): each neighbour slot's page mean, zeros where it may not be read (``nbr_mean_ok``)."""
        if self.page_mean is None or self.nbr_mean_ok is None:
            return None
        ok = self.nbr_mean_ok.index_select(0, pages).unsqueeze(-1)  # (B, K, 1)
        means = self.page_mean.index_select(0, flat).view(pages.shape[0], self.k, self.nbr_mean_dim)
        return torch.where(ok, means, 0.0).to(dtype)

    def to(self, device: torch.device | str) -> PageFeatures:
        """The tables on ``device``; a table that is a view of another (the mean-image slot) stays a view."""
        device = torch.device(device)
        fields: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if self.image_is_nbr_image():
            del fields["image"]
        if self.image_mask_is_has_image():
            del fields["image_mask"]
        out: dict[str, Any] = {name: upload(t, device) if isinstance(t, Tensor) else t for name, t in fields.items()}
        out.setdefault("image", out["nbr_image"].unsqueeze(1))
        out.setdefault("image_mask", out["has_image"].unsqueeze(1))
        return PageFeatures(**out)

    def image_is_nbr_image(self) -> bool:
        """True when the one image slot is the mean-image table itself (same memory), as built from the mean."""
        return _is_column_view(self.image, self.nbr_image)

    def image_mask_is_has_image(self) -> bool:
        return _is_column_view(self.image_mask, self.has_image)


def _is_column_view(slots: Tensor, table: Tensor) -> bool:
    """``slots`` (N, 1, ...) is ``table`` (N, ...) with a unit axis added: the same bytes, row for row."""
    return (
        slots.dim() == table.dim() + 1
        and slots.shape[1] == 1
        and slots.shape[0] == table.shape[0]
        and slots.shape[2:] == table.shape[1:]
        and slots.dtype == table.dtype
        and slots.device == table.device
        and table.is_contiguous()
        and slots.data_ptr() == table.data_ptr()
        and slots.stride()[0] == table.stride()[0]
    )


def upload(table: Tensor, device: torch.device, block_bytes: int = 1 << 26) -> Tensor:
    """``table`` on ``device``. CPU to CUDA goes through two pinned buffers in blocks: the host copy into one
    (torch's multi-threaded copy, which also faults memory-mapped pages in) overlaps the DMA of the other."""
    if device.type != "cuda" or table.device.type != "cpu" or table.numel() == 0:
        return table.to(device)
    src = table.contiguous()
    dst = torch.empty(src.shape, dtype=src.dtype, device=device)
    flat_src, flat_dst = src.view(-1), dst.view(-1)
    step = max(1, block_bytes // src.element_size())
    buffers = [torch.empty(min(step, flat_src.numel()), dtype=src.dtype, pin_memory=True) for _ in range(2)]
    done = [torch.cuda.Event(), torch.cuda.Event()]
    stream = torch.cuda.current_stream(device)
    for i, lo in enumerate(range(0, flat_src.numel(), step)):
        buf, event = buffers[i % 2], done[i % 2]
        event.synchronize()  # the DMA that last read this buffer has finished (no-op before its first use)
        m = min(step, flat_src.numel() - lo)
        buf[:m].copy_(flat_src[lo : lo + m])
        flat_dst[lo : lo + m].copy_(buf[:m], non_blocking=True)
        event.record(stream)
    stream.synchronize()
    return dst


def page_boards(
    page_pin_indptr: np.ndarray,
    page_pin_indices: np.ndarray,
    pin_board_indptr: np.ndarray,
    pin_board_indices: np.ndarray,
    slots: int,
) -> np.ndarray:
    """(n_pages, slots) int32: each page's boards (over its pins) by pin count, descending; -1 padded.

    Ties go to the lower board_idx, so the table is a pure function of the graph.
    """
    n_pages = len(page_pin_indptr) - 1
    out = np.full((n_pages, slots), -1, dtype=np.int32)
    if slots == 0 or len(pin_board_indices) == 0:
        return out
    page, _, board = page_pin_boards(page_pin_indptr, page_pin_indices, pin_board_indptr, pin_board_indices)
    n_boards = int(board.max()) + 1 if len(board) else 1
    pair, count = np.unique(page * n_boards + board, return_counts=True)  # sorted by (page, board)
    p, b = pair // n_boards, pair % n_boards
    order = np.lexsort((b, -count, p))  # by page, then count desc, then board asc
    p, b = p[order], b[order]
    first = np.searchsorted(p, p)  # first row of each page's run
    rank = np.arange(len(p)) - first
    keep = rank < slots
    out[p[keep], rank[keep]] = b[keep]
    return out


def degree_buckets(degree: np.ndarray, n_buckets: int) -> np.ndarray:
    """uint8 bucket floor(log2(1 + degree)), capped at ``n_buckets - 1``."""
    bucket = np.floor(np.log2(1.0 + np.asarray(degree, dtype=np.float64)))
    return np.clip(bucket, 0, n_buckets - 1).astype(np.uint8)


def page_features_from_arrays(
    text: np.ndarray,
    degree: np.ndarray,
    neighbours: np.ndarray,
    visits: np.ndarray,
    *,
    image: np.ndarray | None = None,
    has_image: np.ndarray | None = None,
    image_tokens: np.ndarray | None = None,
    image_token_mask: np.ndarray | None = None,
    k: int | None = None,
    degree_bucket_count: int = 24,
    names: dict[str, str] | None = None,
    copy: bool = True,
    boards: np.ndarray | None = None,
    board_text: np.ndarray | None = None,
    board_means: BoardMeans | None = None,
    page_mean: np.ndarray | None = None,
    nbr_mean_ok: np.ndarray | None = None,
    domain: np.ndarray | None = None,
    n_domains: int = 0,
) -> PageFeatures:
    """Build CPU tables from numpy arrays (memory-mapped or not), checking shapes and neighbour ids.

    ``boards`` (N, S) board_idx (-1 = none) with ``board_text`` (n_boards, Dt) give the board tokens
    (left out when there are no boards), ``board_means`` their slots' board means
    (``pin_means.board_means``); ``page_mean`` (N, Dm) with ``nbr_mean_ok`` (N, k) the neighbour means
    (``pin_means.page_means``, ``~pin_means.shares_a_pin``); ``domain`` (N,) domain_idx (-1 = none) the domain token.

    ``image_tokens`` (N, M, Di) with ``image_token_mask`` give one token per image; otherwise the mean
    ``image`` (N, Di) is the page's single image slot (a view of the ``nbr_image`` table). ``k`` keeps the
    first k neighbour columns. ``names`` maps argument names to the files they came from, for error
    messages. ``copy=False`` wraps writable, C-contiguous arrays of the right dtype as they are (no copy).
    """
    names = names or {}
    n = len(text)

    def where(arg: str) -> str:
        return names.get(arg, arg)

    def rows(arg: str, arr: np.ndarray) -> None:
        if len(arr) != n:
            raise InputError(f"has {len(arr)} rows, expected one per page ({n})", file=where(arg))

    for arg, arr in (("degree", degree), ("neighbours", neighbours), ("visits", visits)):
        rows(arg, arr)
    if neighbours.shape != visits.shape:
        raise InputError(f"shape {visits.shape} differs from the neighbours' {neighbours.shape}", file=where("visits"))
    k_avail = neighbours.shape[1] if neighbours.ndim == 2 else 0
    k = k_avail if k is None else k
    if k > k_avail:
        raise ConfigError(
            f"train.neighbours: {k} exceeds the {k_avail} neighbours per page in {where('neighbours')}; "
            f"set train.neighbours <= {k_avail} or raise walk.top_k"
        )
    nbr = np.ascontiguousarray(neighbours[:, :k], dtype=np.int32) if k else np.zeros((n, 0), np.int32)
    if nbr.size and (nbr.min() < -1 or nbr.max() >= n):
        bad = np.flatnonzero((nbr < -1).any(1) | (nbr >= n).any(1))[0]
        raise InputError(
            f"neighbour ids must be -1 or a page_idx below {n}", file=where("neighbours"), row=int(bad), value=nbr[bad]
        )
    vis = np.log1p(np.maximum(np.asarray(visits[:, :k], dtype=np.float32), 0.0)) if k else np.zeros((n, 0), np.float32)

    dim_img = 0 if image is None or image.ndim != 2 else image.shape[1]
    if dim_img:
        assert image is not None
        rows("image", image)
        mean_img = np.asarray(image, dtype=np.float16)
        has = np.asarray(has_image, dtype=bool) if has_image is not None else np.abs(mean_img).sum(1) > 0
        rows("has_image", has)
    else:
        mean_img, has = np.zeros((n, 0), np.float16), np.zeros(n, bool)

    def t(arr: np.ndarray) -> Tensor:
        if not copy and arr.flags.writeable and arr.flags.c_contiguous:
            return torch.from_numpy(arr)  # e.g. a copy-on-write memory map: no copy, pages read on use
        return torch.from_numpy(np.array(arr, copy=True))  # a writable copy, also of read-only memory maps

    nbr_image, has_t = t(mean_img), t(has)
    if dim_img and image_tokens is not None and image_token_mask is not None and image_tokens.shape[1] > 0:
        rows("image_tokens", image_tokens)
        rows("image_token_mask", image_token_mask)
        if image_tokens.shape[2] != dim_img:
            raise InputError(f"image dim {image_tokens.shape[2]} differs from {dim_img}", file=where("image_tokens"))
        slots = t(np.asarray(image_tokens, dtype=np.float16))
        slot_mask = t(np.asarray(image_token_mask, dtype=bool))
    else:  # the page's one image slot is its mean image: a view of that table, not a second copy
        slots, slot_mask = nbr_image.unsqueeze(1), has_t.unsqueeze(1)

    with_boards = boards is not None and board_text is not None and len(board_text) > 0
    return PageFeatures(
        text=t(np.asarray(text, dtype=np.float16)),
        image=slots,
        image_mask=slot_mask,
        nbr_image=nbr_image,
        has_image=has_t,
        degree_bucket=t(degree_buckets(degree, degree_bucket_count)),
        neighbours=t(nbr),
        log_visits=t(vis),
        boards=t(np.asarray(boards, dtype=np.int32)) if with_boards else None,
        board_text=t(np.asarray(board_text, dtype=np.float16)) if with_boards else None,
        board_mean=t(board_means.board) if with_boards and board_means is not None else None,
        board_mean_fixed=t(board_means.fixed) if with_boards and board_means is not None else None,
        board_mean_at=t(board_means.at) if with_boards and board_means is not None else None,
        page_mean=None if page_mean is None else t(np.asarray(page_mean, dtype=np.float16)),
        nbr_mean_ok=None
        if nbr_mean_ok is None
        else t(np.ascontiguousarray(np.asarray(nbr_mean_ok, dtype=bool)[:, :k])),
        domain=None if domain is None else t(np.asarray(domain, dtype=np.int32)),
        n_domains=n_domains,
    )


def load_page_features(
    run_dir: Path,
    *,
    k: int,
    image_mode: str = "each",
    degree_bucket_count: int = 24,
    board_slots: int = 0,
    board_means: bool = False,
    neighbour_means: bool = False,
    pin_means_before: int | None = None,
    domains: bool = False,
    copy: bool = True,
) -> PageFeatures:
    """Page tables of a run directory's content, graph and walk stages (CPU tensors).

    ``copy=False`` leaves the large tables memory-mapped (copy-on-write: pages are read when first used,
    nothing is written back), which is what a pass that uploads them to a GPU or reads each row once wants.

    Reads content/page_text.npy, page_image.npy, page_has_image.npy (and page_image_tokens.npy with
    page_image_mask.npy when ``image_mode`` is "each" and they exist), graph/page__pin.indptr.npy (the
    degree) and walk/neighbours.npy with visits.npy. With ``board_slots`` > 0, also content/board_text.npy
    and graph/pin__board.*: each page's top boards by pin count become board tokens (when both exist).
    With ``board_means`` as well, content/pin_target.npy (and ingest/pins.parquet's created_at when
    ``pin_means_before`` is set) give each board token its board's mean target, the page's own pins
    left out (``pin_means.board_means``). With ``neighbour_means`` (and k > 0), the same targets give each
    neighbour token its page's mean pin target, masked where the neighbour shares a pin with the page.
    With ``domains``, graph/page__domain.* gives each page's domain (the domain token).
    """
    content, graph, walk = run_dir / "content", run_dir / "graph", run_dir / "walk"

    mode: Literal["r", "c"] = "r" if copy else "c"

    def load(path: Path) -> np.ndarray:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; has its stage completed in {run_dir}?")
        return np.load(path, mmap_mode=mode)

    def optional(path: Path) -> np.ndarray | None:
        return np.load(path, mmap_mode=mode) if path.exists() else None

    text = load(content / "page_text.npy")
    indptr = load(graph / "page__pin.indptr.npy")
    if len(indptr) != len(text) + 1:
        raise InputError(
            f"has {len(indptr)} entries, expected n_pages + 1 = {len(text) + 1}", file=graph / "page__pin.indptr.npy"
        )
    if k > 0:
        neighbours, visits = load(walk / "neighbours.npy"), load(walk / "visits.npy")
    else:
        neighbours = visits = np.zeros((len(text), 0), np.int32)
    boards = board_text = domain = None
    board_mean_tables: BoardMeans | None = None
    n_domains = 0
    board_vectors = content / "board_text.npy"
    with_boards = board_slots > 0 and board_vectors.exists() and (graph / "pin__board.indptr.npy").exists()
    with_nbr_means = neighbour_means and k > 0
    pin_lists = load(graph / "page__pin.indices.npy") if with_boards or with_nbr_means else np.zeros(0, np.int32)
    page_pin = indptr, pin_lists
    # the pin targets and who may enter a mean: read once for both kinds of means
    pin_targets = (
        eligible_targets(run_dir, pin_means_before) if (with_boards and board_means) or with_nbr_means else None
    )
    if with_boards:
        board_text = np.load(board_vectors)
        pin_board = load(graph / "pin__board.indptr.npy"), load(graph / "pin__board.indices.npy")
        boards = page_boards(*page_pin, *pin_board, board_slots)
        if board_means:
            board_mean_tables = run_board_means(run_dir, page_pin, pin_board, boards, pin_means_before, pin_targets)
    if domains and (graph / "page__domain.indptr.npy").exists():
        domain, n_domains = page_domains(
            load(graph / "page__domain.indptr.npy"), load(graph / "page__domain.indices.npy"), len(text)
        )
    page_mean = nbr_ok = None
    if with_nbr_means:
        page_mean, nbr_ok = run_neighbour_means(run_dir, page_pin, neighbours[:, :k], pin_means_before, pin_targets)
    tokens = mask = None
    if image_mode == "each":
        tokens, mask = optional(content / "page_image_tokens.npy"), optional(content / "page_image_mask.npy")
    return page_features_from_arrays(
        text,
        np.diff(np.asarray(indptr)),
        neighbours,
        visits,
        image=optional(content / "page_image.npy"),
        has_image=optional(content / "page_has_image.npy"),
        image_tokens=tokens,
        image_token_mask=mask,
        k=k,
        degree_bucket_count=degree_bucket_count,
        names={
            "text": str(content / "page_text.npy"),
            "degree": str(graph / "page__pin.indptr.npy"),
            "neighbours": str(walk / "neighbours.npy"),
            "visits": str(walk / "visits.npy"),
            "image": str(content / "page_image.npy"),
            "has_image": str(content / "page_has_image.npy"),
            "image_tokens": str(content / "page_image_tokens.npy"),
            "image_token_mask": str(content / "page_image_mask.npy"),
        },
        copy=copy,
        boards=boards,
        board_text=board_text,
        board_means=board_mean_tables,
        page_mean=page_mean,
        nbr_mean_ok=nbr_ok,
        domain=domain,
        n_domains=n_domains,
    )


def run_board_means(
    run_dir: Path,
    page_pin: tuple[np.ndarray, np.ndarray],
    pin_board: tuple[np.ndarray, np.ndarray],
    boards: np.ndarray,
    before: int | None,
    pin_targets: tuple[np.ndarray, np.ndarray] | None = None,
    totals: BoardTotals | None = None,
) -> BoardMeans:
    """The board means of the pages of ``page_pin`` (a page -> pin CSR), by the run's pin targets and,
    with a cut-off, its pins' created_at (see ``load_page_features``); ``pin_targets`` is
    ``eligible_targets(run_dir, before)`` and ``totals`` the boards' ``board_totals`` when the caller has
    them already."""
    targets, eligible = pin_targets or eligible_targets(run_dir, before)
    if len(pin_board[0]) != len(targets) + 1:
        raise InputError(
            f"has {len(pin_board[0])} entries, expected n_pins + 1 = {len(targets) + 1}",
            file=run_dir / "graph" / "pin__board.indptr.npy",
        )
    return board_means(*page_pin, *pin_board, boards, targets, eligible, totals)


def run_neighbour_means(
    run_dir: Path,
    page_pin: tuple[np.ndarray, np.ndarray],
    neighbours: np.ndarray,
    before: int | None,
    pin_targets: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(page means (N, Dm), which neighbour slots may read them (N, K)) by the run's pin targets and, with
    a cut-off, its pins' created_at (see ``load_page_features``; ``pin_targets`` as for ``run_board_means``)."""
    targets, eligible = pin_targets or eligible_targets(run_dir, before)
    ok = ~shares_a_pin(*page_pin, neighbours) & (np.asarray(neighbours) >= 0)  # empty slots read nothing
    return page_means(*page_pin, targets, eligible), ok


def eligible_targets(run_dir: Path, before: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The run's pin targets (memory-mapped) and which pins may enter pin means (``pin_means.eligible_pins``)."""
    path = run_dir / "content" / "pin_target.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; has its stage completed in {run_dir}?")
    targets = np.load(path, mmap_mode="r")
    created = None
    if before is not None:
        pins = run_dir / "ingest" / "pins.parquet"
        created = time_column(pins, "pin_idx", "created_at", len(targets))
        if created is None:
            raise InputError("has no created_at column: pin means under a time split need each pin's time", file=pins)
    return targets, eligible_pins(created, len(targets), before)


def page_domains(indptr: np.ndarray, indices: np.ndarray, n_pages: int) -> tuple[np.ndarray, int]:
    """(n_pages,) int32 domain_idx of each page (its first page->domain edge; -1 = none), and n_domains."""
    indptr = np.asarray(indptr)
    if len(indptr) != n_pages + 1:
        raise InputError(f"has {len(indptr)} entries, expected n_pages + 1 = {n_pages + 1}", file="page__domain")
    domain = csr_first(indptr, indices).astype(np.int32)
    n_domains = int(np.asarray(indices).max()) + 1 if len(indices) else 0
    return domain, n_domains
