"""The LinkSage encoder: a small pre-norm Transformer over a page's own and its neighbours' content tokens.

Tokens, in order (B = pages, K = neighbours, M = image slots of the page itself)::

    [global] [self text] [self image x M] [self degree] [board x S] [nbr text x K] [nbr image x K]

Neighbour tokens carry a rank embedding (neighbours come sorted by visits, descending) and their log
visit count, and when ``nbr_mean_dim`` > 0 the neighbour's mean pin target (never one the page shares).
Missing neighbours and images are *masked out of attention* (key padding), never fed as zero vectors.
The global token's output is projected to the largest Matryoshka dim.

Board tokens (the collections the page's pins sit in, most pins first) carry the board's text vector,
when ``n_boards`` > 0 a learned embedding per board, and when ``board_mean_dim`` > 0 the board's mean
pin target with the page's own pins left out (``linksage.train.pin_means``). A domain token
(``n_domains`` > 0, opt-in) is a learned embedding of the page's domain, starting at zero so that a
domain no training page reaches stays neutral. An index at or past either table (a board or domain first
seen after training) reads the shared "unknown" row.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class EncoderConfig:
    text_dim: int  # Dt: page text vectors
    image_dim: int  # Di: page image vectors; 0 = no image tokens at all
    image_slots: int  # M: image tokens of the page itself (1 = the size-weighted mean image)
    neighbours: int  # K; 0 = content-only model
    output_dim: int  # the largest Matryoshka dim
    n_dims: int = 1  # Matryoshka dims (one learned temperature each)
    d_model: int = 256
    layers: int = 4
    heads: int = 8
    mlp_ratio: int = 4
    dropout: float = 0.0
    degree_buckets: int = 24
    temperature_init: float = 0.07
    text_skip: bool = True  # a linear path from the page's own text to the output, beside the Transformer
    board_slots: int = 0  # S: board tokens per page; 0 = none
    n_boards: int = 0  # rows of the learned board embedding (+1 unknown); 0 = board text only
    n_domains: int = 0  # rows of the learned domain embedding (+1 unknown); 0 = no domain token
    board_mean_dim: int = 0  # Dm: board tokens also read their board's mean pin target; 0 = not
    nbr_mean_dim: int = 0  # Dm: neighbour tokens also read the neighbour's mean pin target; 0 = not
    # board and neighbour means are over pins created before this (unix s); None = all pins (see train/pin_means.py)
    pin_means_before: int | None = None

    @property
    def n_tokens(self) -> int:
        images = self.image_slots if self.image_dim else 0
        domain = 1 if self.n_domains else 0
        return 3 + images + self.board_slots + domain + self.neighbours * (2 if self.image_dim else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PageInputs(NamedTuple):
    """A batch of encoder inputs, already gathered (see ``linksage.train.features``). True = present."""

    self_text: Tensor  # (B, Dt)
    self_images: Tensor  # (B, M, Di)
    self_image_mask: Tensor  # (B, M) bool
    degree_bucket: Tensor  # (B,) int64
    nbr_text: Tensor  # (B, K, Dt)
    nbr_image: Tensor  # (B, K, Di)
    nbr_mask: Tensor  # (B, K) bool
    nbr_image_mask: Tensor  # (B, K) bool
    nbr_log_visits: Tensor  # (B, K) float
    board_text: Tensor | None = None  # (B, S, Dt)
    board_ids: Tensor | None = None  # (B, S) int64 board_idx, -1 = no board
    board_mask: Tensor | None = None  # (B, S) bool
    board_mean: Tensor | None = None  # (B, S, Dm): the board's mean pin target, the page's own pins left out
    nbr_mean: Tensor | None = None  # (B, K, Dm): each neighbour's mean pin target (zeros where it shares a pin)
    domain_ids: Tensor | None = None  # (B,) int64 domain_idx, -1 = none


class Block(nn.Module):
    """Pre-norm Transformer block; ``first_only`` computes the output of token 0 alone (the last layer)."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: Tensor, attend: Tensor, first_only: bool = False) -> Tensor:
        # x (B, T, D); attend (B, 1, 1, T) bool, True = this key takes part
        B, T, D = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4)  # each (B, h, T, D/h)
        if first_only:
            q, x = q[:, :, :1], x[:, :1]  # (B, h, 1, D/h), (B, 1, D)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=p)  # (B, h, T', D/h)
        a = a.transpose(1, 2).reshape(B, x.shape[1], D)  # (B, T', D)
        x = x + F.dropout(self.proj(a), p, self.training)
        x = x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), p, self.training)
        return x


class LinkSageEncoder(nn.Module):
    """Page (+ neighbours) -> one embedding of size ``output_dim`` (not normalised; prefixes are)."""

    # token types, added to every token so that shared input projections stay distinguishable
    GLOBAL, SELF_TEXT, SELF_IMAGE, DEGREE, NBR_TEXT, NBR_IMAGE = range(6)

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.heads:
            raise ValueError(f"heads={cfg.heads} must divide d_model={cfg.d_model}")
        self.cfg = cfg
        d = cfg.d_model
        self.text_proj = nn.Linear(cfg.text_dim, d)
        self.type_emb = nn.Parameter(torch.randn(6, d) * 0.02)
        self.degree_emb = nn.Embedding(cfg.degree_buckets, d)
        # parts that a content-only or image-less model does not have
        self.image_proj = nn.Linear(cfg.image_dim, d) if cfg.image_dim else None
        self.image_slot_emb = nn.Parameter(torch.randn(cfg.image_slots, d) * 0.02) if cfg.image_dim else None
        self.rank_emb = nn.Parameter(torch.randn(cfg.neighbours, d) * 0.02) if cfg.neighbours else None
        self.visit_proj = nn.Linear(1, d) if cfg.neighbours else None
        self.board_type = nn.Parameter(torch.randn(d) * 0.02) if cfg.board_slots else None
        self.board_emb = nn.Embedding(cfg.n_boards + 1, d) if cfg.board_slots and cfg.n_boards else None
        # bias-free: a slot whose board has no eligible pins left reads zeros and so adds nothing
        with_mean = cfg.board_slots and cfg.board_mean_dim
        self.board_mean_proj = nn.Linear(cfg.board_mean_dim, d, bias=False) if with_mean else None
        with_nbr_mean = cfg.neighbours and cfg.nbr_mean_dim
        self.nbr_mean_proj = nn.Linear(cfg.nbr_mean_dim, d, bias=False) if with_nbr_mean else None
        self.domain_type = nn.Parameter(torch.randn(d) * 0.02) if cfg.n_domains else None
        self.domain_emb = nn.Embedding(cfg.n_domains + 1, d) if cfg.n_domains else None
        if self.board_emb is not None:
            nn.init.normal_(self.board_emb.weight, std=0.02)
        if self.domain_emb is not None:
            nn.init.zeros_(self.domain_emb.weight)  # a domain no training page reaches stays neutral
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.output_dim)
        # The page's own text often maps almost linearly into the targets' space (the zero-shot baseline);
        # a full-rank linear path learns that map at once, and the Transformer adds what the graph knows.
        self.text_skip = nn.Linear(cfg.text_dim, cfg.output_dim, bias=False) if cfg.text_skip else None
        # One learned temperature per Matryoshka dim, as log(1 / temperature); clamped by the loss.
        self.log_logit_scale = nn.Parameter(torch.full((cfg.n_dims,), math.log(1.0 / cfg.temperature_init)))
        nn.init.normal_(self.degree_emb.weight, std=0.02)

    def tokens(self, x: PageInputs) -> tuple[Tensor, Tensor]:
        """Token matrix (B, T, D) and its key mask (B, T), True = present."""
        B = x.self_text.shape[0]
        ty = self.type_emb
        parts = [ty[self.GLOBAL].expand(B, 1, -1)]  # (B, 1, D)
        masks = [x.self_text.new_ones((B, 1), dtype=torch.bool)]
        parts.append((self.text_proj(x.self_text) + ty[self.SELF_TEXT]).unsqueeze(1))  # (B, 1, D)
        masks.append(masks[0])
        if self.image_proj is not None and self.image_slot_emb is not None:
            img = self.image_proj(x.self_images) + ty[self.SELF_IMAGE] + self.image_slot_emb  # (B, M, D)
            parts.append(img)
            masks.append(x.self_image_mask)
        parts.append((self.degree_emb(x.degree_bucket) + ty[self.DEGREE]).unsqueeze(1))  # (B, 1, D)
        masks.append(masks[0])
        if self.board_type is not None and x.board_text is not None and x.board_mask is not None:
            board = self.text_proj(x.board_text) + self.board_type  # (B, S, D)
            if self.board_emb is not None and x.board_ids is not None:
                unknown = self.cfg.n_boards
                ids = torch.where((x.board_ids < 0) | (x.board_ids >= unknown), unknown, x.board_ids)  # (B, S)
                board = board + self.board_emb(ids)
            if self.board_mean_proj is not None:
                if x.board_mean is None:
                    raise ValueError("the encoder reads board means (board_mean_dim > 0); the inputs have none")
                board = board + self.board_mean_proj(x.board_mean)
            parts.append(board)
            masks.append(x.board_mask)
        if self.domain_emb is not None and self.domain_type is not None:
            unknown = self.cfg.n_domains
            dom = x.domain_ids if x.domain_ids is not None else x.degree_bucket.new_full((B,), -1)
            dom = torch.where((dom < 0) | (dom >= unknown), unknown, dom)  # (B,)
            parts.append((self.domain_emb(dom) + self.domain_type).unsqueeze(1))  # (B, 1, D)
            masks.append(masks[0])
        if self.rank_emb is not None and self.visit_proj is not None:
            # rank (K, D) and log visit count (B, K, D) position each neighbour
            where = self.rank_emb + self.visit_proj(x.nbr_log_visits.unsqueeze(-1).to(self.rank_emb.dtype))
            nbr = self.text_proj(x.nbr_text) + ty[self.NBR_TEXT] + where  # (B, K, D)
            if self.nbr_mean_proj is not None:
                if x.nbr_mean is None:
                    raise ValueError("the encoder reads neighbour means (nbr_mean_dim > 0); the inputs have none")
                nbr = nbr + self.nbr_mean_proj(x.nbr_mean)
            parts.append(nbr)
            masks.append(x.nbr_mask)
            if self.image_proj is not None:
                parts.append(self.image_proj(x.nbr_image) + ty[self.NBR_IMAGE] + where)  # (B, K, D)
                masks.append(x.nbr_mask & x.nbr_image_mask)
        # the residual stream stays in the parameters' dtype (fp32 under autocast: bf16 matmuls only)
        dtype = ty.dtype
        return torch.cat([p.to(dtype) for p in parts], dim=1), torch.cat(masks, dim=1)

    def forward(self, x: PageInputs) -> Tensor:
        h, present = self.tokens(x)  # (B, T, D), (B, T)
        attend = present[:, None, None, :]  # (B, 1, 1, T): key padding for every query and head
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # only the global token's output is used: the last block computes just that row
            h = block(h, attend, first_only=i == last)
        out = self.head(self.ln_out(h[:, 0]))  # (B, output_dim)
        if self.text_skip is not None:
            out = out + self.text_skip(x.self_text)
        return out

    def logit_scales(self, temperature_min: float) -> Tensor:
        """exp(log scale), clamped so that the temperature stays in [temperature_min, 1]."""
        return self.log_logit_scale.clamp(0.0, math.log(1.0 / temperature_min)).exp()  # (n_dims,)


def create_encoder(cfg: EncoderConfig) -> LinkSageEncoder:
    return LinkSageEncoder(cfg)


def empty_inputs(cfg: EncoderConfig, batch: int, device: torch.device | str = "cpu") -> PageInputs:
    """All-present random inputs of the right shapes (tests and benchmarks)."""
    g = torch.Generator().manual_seed(0)
    M, K = cfg.image_slots, cfg.neighbours

    def rnd(*shape: int) -> Tensor:
        return F.normalize(torch.randn(*shape, generator=g), dim=-1).to(device)

    S = cfg.board_slots
    return PageInputs(
        self_text=rnd(batch, cfg.text_dim),
        self_images=rnd(batch, M, cfg.image_dim) if cfg.image_dim else torch.zeros(batch, M, 0, device=device),
        self_image_mask=torch.ones(batch, M, dtype=torch.bool, device=device),
        degree_bucket=torch.randint(0, cfg.degree_buckets, (batch,), generator=g).to(device),
        nbr_text=rnd(batch, K, cfg.text_dim),
        nbr_image=rnd(batch, K, cfg.image_dim) if cfg.image_dim else torch.zeros(batch, K, 0, device=device),
        nbr_mask=torch.ones(batch, K, dtype=torch.bool, device=device),
        nbr_image_mask=torch.ones(batch, K, dtype=torch.bool, device=device),
        nbr_log_visits=torch.rand(batch, K, generator=g).to(device),
        board_text=rnd(batch, S, cfg.text_dim) if S else None,
        board_ids=torch.randint(0, max(cfg.n_boards, 1), (batch, S), generator=g).to(device) if S else None,
        board_mask=torch.ones(batch, S, dtype=torch.bool, device=device) if S else None,
        board_mean=rnd(batch, S, cfg.board_mean_dim) if S and cfg.board_mean_dim else None,
        nbr_mean=rnd(batch, K, cfg.nbr_mean_dim) if K and cfg.nbr_mean_dim else None,
        domain_ids=torch.randint(0, cfg.n_domains, (batch,), generator=g).to(device) if cfg.n_domains else None,
    )
