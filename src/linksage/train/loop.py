"""The training loop: batches built on the device, Matryoshka contrastive steps, validation, checkpoints.

A step's batch depends only on (seed, step): the pair order of an epoch is a permutation seeded by the
epoch, and the random negatives are drawn from a generator seeded by the step. So a checkpoint needs
no sampler state beyond the step count, and a resumed run replays exactly what an uninterrupted run
does (the global RNG, used by dropout, is saved and restored as well).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from linksage import log
from linksage.config.train import TrainConfig
from linksage.loss import false_negative_mask, log_sampling_counts, matryoshka_contrastive_loss
from linksage.model import LinkSageEncoder, PageInputs
from linksage.train.checkpoint import load_checkpoint, save_checkpoint
from linksage.train.content_negatives import ContentNegatives
from linksage.train.ema import WeightAverage
from linksage.train.features import PageFeatures
from linksage.train.logs import StepLog
from linksage.train.metrics import recall_at_k
from linksage.train.pairs import Pairs
from linksage.train.target_space import LearnedRotation

EVAL_K = 100
CHECKPOINT = "checkpoint.pt"
# a learned target rotation steps at this fraction of train.lr: at the full rate it turned the targets
# under the encoder's feet (demo Reddit slice: Recall@100 at 64 dims 0.688 against 0.704 at a tenth)
ROTATION_LR_SCALE = 0.1


@dataclass
class EvalSet:
    """Validation queries and their retrieval pool, on the device."""

    pages: Tensor  # (P,) int64 page_idx
    pool: Tensor  # (Q,) int64 pin_idx
    pair_row: Tensor  # (n,) int64 index into pages
    pair_col: Tensor  # (n,) int64 index into pool


@dataclass
class BoardPins:
    """Each pin's board and each board's pins, on the device: where same-board (hard) negatives come from."""

    pin_board: Tensor  # (n_pins,) int64: the pin's first board, -1 = none
    indptr: Tensor  # (n_boards + 1,) int64: board -> pins CSR
    pins: Tensor  # (nnz,) int64
    # With a window w > 0, each board's row is ordered by the pins' creation time and a draw is uniform
    # over the w pins on either side of the positive in it (its neighbours in time), not the whole board;
    # ``slot`` is each pin's position in ``pins`` within its first board's row (any value for no board).
    window: int = 0
    slot: Tensor | None = None  # (n_pins,) int64

    def in_time_order(self, created: np.ndarray, window: int) -> BoardPins:
        """These tables with each board's row sorted by the pins' creation time (``created``, (n_pins,);
        ties and unknown times, which sort first, by pin index), each pin's slot in its first board's row,
        and draws ``window`` places either side of the positive."""
        indptr = self.indptr.cpu().numpy()
        pins = self.pins.cpu().numpy()
        row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        pins = pins[np.lexsort((pins, created[pins], row))]  # row is the primary key: rows stay in place
        pin_board = self.pin_board.cpu().numpy()
        slot = np.zeros(len(pin_board), dtype=np.int64)
        first = pin_board[pins] == row  # each pin's entry in its first board (a pin sits once in a board)
        slot[pins[first]] = np.flatnonzero(first)
        device = self.pins.device
        return BoardPins(
            self.pin_board, self.indptr, torch.from_numpy(pins).to(device), window, torch.from_numpy(slot).to(device)
        )

    def draw(self, pins: Tensor, n_pins: int, gen: torch.Generator) -> Tensor:
        """(n,) one pin per entry of ``pins``: uniform over the *other* pins of that pin's (first) board
        (within ``window`` places of it in time when set); uniform over all pins for a pin without a board
        or alone in it. Both draws are always taken, so the generator advances the same way whatever the
        tables hold."""
        u = torch.rand(pins.shape, generator=gen, device=pins.device)
        anywhere = torch.randint(n_pins, pins.shape, generator=gen, device=pins.device)
        if self.indptr.numel() <= 1 or not self.pins.numel():
            return anywhere
        board = self.pin_board.index_select(0, pins)
        row = board.clamp(0, self.indptr.numel() - 2)
        lo = self.indptr.index_select(0, row)
        if self.window:
            return torch.where(board >= 0, self._draw_near(pins, row, lo, u, anywhere), anywhere)
        others = self.indptr.index_select(0, row + 1) - lo - 1  # the board's pins besides this one
        # one of the first `others` slots; a draw of the pin itself takes the board's last slot instead,
        # which the draw never reaches: uniform over the other pins (each pin sits once in its board)
        slot = lo + (u * others.clamp_min(1)).long().clamp_max(others.clamp_min(1) - 1)
        slot = slot.clamp(0, self.pins.numel() - 1)
        drawn = self.pins.index_select(0, slot)
        last = self.pins.index_select(0, (lo + others).clamp(0, self.pins.numel() - 1))
        drawn = torch.where(drawn == pins, last, drawn)
        return torch.where((board >= 0) & (others > 0), drawn, anywhere)

    def _draw_near(self, pins: Tensor, row: Tensor, lo: Tensor, u: Tensor, anywhere: Tensor) -> Tensor:
        """Uniform over the slots a..b (the ``window`` places either side of the pin's slot s, inside its
        row) other than s itself: the r-th of those m slots is a + r, shifted past s. ``anywhere`` where m = 0."""
        if self.slot is None:
            raise ValueError("BoardPins.window needs each pin's slot in its board's time-ordered row")
        s = self.slot.index_select(0, pins)
        a = torch.maximum(lo, s - self.window)
        b = torch.minimum(self.indptr.index_select(0, row + 1) - 1, s + self.window)
        m = b - a  # slots in [a, b] besides s
        r = (u * m.clamp_min(1)).long().clamp_max(m.clamp_min(1) - 1)
        idx = a + r
        idx = (idx + (idx >= s).long()).clamp(0, self.pins.numel() - 1)
        return torch.where(m > 0, self.pins.index_select(0, idx), anywhere)


@dataclass
class TrainData:
    """Everything a step reads, on the device."""

    features: PageFeatures
    # (n_pins, dims[-1]) float32: pins' targets in the trained (rotated) space; for a trainer with a
    # learned rotation, the (n_pins, D) targets that it turns on the fly
    targets: Tensor
    pair_page: Tensor  # (n,) int64: training pairs
    pair_pin: Tensor  # (n,) int64
    val: EvalSet | None = None
    board_pins: BoardPins | None = None  # for train.board_negatives
    # (n_pins,) int64 the (lowest) page each pin links to, -1 = none: masks candidates that are another
    # positive of the row's page; None = only in-batch columns are checked (a uniform random pin is one of
    # them with probability degree / n_pins, a same-board pin far more often). A pin linking to several
    # pages is checked against its lowest one only.
    pin_page: Tensor | None = None
    content_negatives: ContentNegatives | None = None  # for train.content_negatives

    @property
    def n_pins(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class FitResult:
    steps: int  # completed steps, including those before a resume
    best_step: int  # the step whose weights the model holds at the end (0 = no validation)
    best_recall: dict[int, float]  # dim -> validation Recall@100 at best_step
    early_stopped: bool
    resumed_from: int
    samples_per_s: float  # training samples per second of this call (evaluation excluded)
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation


def make_eval_set(
    pairs: Pairs, n_pins: int, max_pages: int, pool_size: int, seed: int, device: torch.device
) -> EvalSet:
    """Up to ``max_pages`` validation pages (seeded sample) and a pool of all pins, or ``pool_size`` random
    pins plus every positive of the sampled pages."""
    rng = np.random.default_rng(seed + 17)
    pages = np.unique(pairs.page)
    if len(pages) > max_pages:
        pages = np.sort(rng.choice(pages, max_pages, replace=False))
    keep = np.isin(pairs.page, pages)
    page_of, pin_of = pairs.page[keep], pairs.pin[keep]
    if pool_size == 0 or n_pins <= pool_size:
        pool = np.arange(n_pins, dtype=np.int64)
    else:
        pool = np.union1d(rng.choice(n_pins, pool_size, replace=False), pin_of).astype(np.int64)
    return EvalSet(
        pages=torch.from_numpy(pages.astype(np.int64)).to(device),
        pool=torch.from_numpy(pool).to(device),
        pair_row=torch.from_numpy(np.searchsorted(pages, page_of).astype(np.int64)).to(device),
        pair_col=torch.from_numpy(np.searchsorted(pool, pin_of).astype(np.int64)).to(device),
    )


class Trainer:
    """Owns the model, optimiser, schedule and logs of one training run.

    ``rotation`` (``train.target_rotation = "learned"``) is trained with the model: the targets are then
    the full-size ones, and each step turns its candidates through it.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainData,
        model: LinkSageEncoder,
        *,
        device: torch.device,
        bf16: bool = False,
        compile: bool = False,
        work_dir: Path | None = None,
        checkpoint_key: str = "",
        rotation: LearnedRotation | None = None,
    ) -> None:
        self.cfg, self.data, self.model, self.device = cfg, data, model, device
        self.rotation = rotation
        if rotation is not None and rotation.skew.shape[0] != data.targets.shape[1]:
            raise ValueError(
                f"the learned rotation turns {rotation.skew.shape[0]}-dim targets, the data's are "
                f"{data.targets.shape[1]}-dim (a learned rotation takes the full-size targets)"
            )
        self.bf16 = bf16
        self.input_dtype = torch.bfloat16 if bf16 else torch.float32
        self.work_dir, self.checkpoint_key = work_dir, checkpoint_key
        self.dims, self.weights = list(cfg.dims), list(cfg.weights)
        self.n_pairs = int(data.pair_page.shape[0])
        if self.n_pairs == 0:
            raise ValueError("no training pairs: every page is in validation/test or has no cohesive pin")
        # what the optimiser, the checkpoints and the best-weights copy hold: the encoder, and the target
        # rotation when it is learned (a run without one keeps the encoder's own state-dict keys)
        self.net: torch.nn.Module = model
        if rotation is not None:
            self.net = torch.nn.ModuleDict({"encoder": model, "rotation": rotation})
        self.opt = _optimizer(model, cfg, device, rotation)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _schedule(cfg))
        self._log_q: Tensor | None = None
        if cfg.logq_correction:
            counts = torch.bincount(data.pair_pin, minlength=data.n_pins)
            self._log_q = log_sampling_counts(counts, self.n_pairs, cfg.batch_size, cfg.random_negatives).to(device)
        self._step_gen = torch.Generator(device=device)
        self._perm_gen = torch.Generator(device=device)
        self._perm_cache: tuple[int, Tensor] | None = None
        self._forward_loss: Callable[..., tuple[Tensor, Tensor, Tensor]] = self._forward_loss_eager
        if compile:
            self._forward_loss = torch.compile(self._forward_loss_eager, dynamic=False)
        self._params = [p for p in self.net.parameters() if p.requires_grad]
        self.average = WeightAverage(self.net, cfg.ema_decay) if cfg.ema_decay else None

    # --- one step -------------------------------------------------------------------------------------

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """Pages (B,), their positive pins (B,) and all candidate pins of step ``step`` (0-based): the B
        positives, R random pins, then k * B board negatives (k = train.board_negatives), then c * B
        content negatives (c = train.content_negatives)."""
        idx = self._pair_indices(step)
        pages, pins = self.data.pair_page[idx], self.data.pair_pin[idx]
        cfg, gen, parts = self.cfg, self._step_gen, [pins]
        if cfg.random_negatives or cfg.board_negatives or cfg.content_negatives:
            gen.manual_seed(_mix(cfg.seed, step))
        if cfg.random_negatives:
            parts.append(torch.randint(self.data.n_pins, (cfg.random_negatives,), device=self.device, generator=gen))
        if cfg.board_negatives:
            if self.data.board_pins is None:
                raise ValueError("train.board_negatives needs the pins' boards (TrainData.board_pins)")
            parts.append(self.data.board_pins.draw(pins.repeat(cfg.board_negatives), self.data.n_pins, gen))
        if cfg.content_negatives:
            if self.data.content_negatives is None:
                raise ValueError("train.content_negatives needs the pages' nearest pins (TrainData.content_negatives)")
            drawn = self.data.content_negatives.draw(pages.repeat(cfg.content_negatives), self.data.n_pins, gen)
            parts.append(drawn)
        return pages, pins, torch.cat(parts) if len(parts) > 1 else pins

    def train_step(self, step: int) -> Tensor:
        """One optimisation step; returns a device row: loss, per-dim losses, per-dim temperatures, grad norm."""
        pages, pins, cand_pins = self.batch(step)
        inputs = self.hide_content(self.data.features.gather(pages, self.input_dtype), step)
        cand = self.targets(cand_pins)  # (C, dims[-1])
        mask = self.mask(pages, pins, cand_pins)  # (B, C)
        log_q = self._log_q.index_select(0, cand_pins) if self._log_q is not None else None
        loss, per_dim, scales = self._forward_loss(inputs, cand, mask, log_q)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm, foreach=True)
        self.opt.step()
        self.sched.step()
        if self.average is not None:
            self.average.update()
        return torch.cat([loss.detach()[None], per_dim.detach(), 1.0 / scales.detach(), grad_norm.detach()[None]])

    def hide_content(self, inputs: PageInputs, step: int) -> PageInputs:
        """``inputs`` with each page's own text vector zeroed with probability train.content_dropout (drawn
        from the step's seed, so a resumed run hides the same pages)."""
        p = self.cfg.content_dropout
        if not p:
            return inputs
        text = inputs.self_text
        gen = self._step_gen
        gen.manual_seed(_mix(self.cfg.seed ^ 0x5EED, step))
        keep = torch.rand((text.shape[0], 1), device=text.device, generator=gen) >= p  # (B, 1)
        return inputs._replace(self_text=text * keep.to(text.dtype))

    def mask(self, pages: Tensor, pins: Tensor, cand_pins: Tensor) -> Tensor:
        """(B, C) bool: the false negatives of a batch (``false_negative_mask``, with the pins' pages if known)."""
        cand_pages = None if self.data.pin_page is None else self.data.pin_page.index_select(0, cand_pins)
        return false_negative_mask(pins, pages, cand_pins, cand_pages)

    def targets(self, pins: Tensor) -> Tensor:
        """(n, dims[-1]) target vectors of pins in the trained space (through the learned rotation, if any)."""
        rows = self.data.targets.index_select(0, pins)
        return rows if self.rotation is None else self.rotation(rows)

    def _forward_loss_eager(
        self, inputs: PageInputs, cand: Tensor, mask: Tensor, log_q: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            emb = self.model(inputs)  # (B, dims[-1])
        scales = self.model.logit_scales(self.cfg.temperature_min)
        # the loss in fp32: prefix norms and logits are too coarse in bf16
        loss, per_dim = matryoshka_contrastive_loss(
            emb.float(),
            cand,
            self.dims,
            self.weights,
            scales,
            mask,
            log_q,
            distill=self.cfg.prefix_distillation,
            reverse=self.cfg.reverse_loss,
        )
        return loss, per_dim, scales

    def _pair_indices(self, step: int) -> Tensor:
        B, n = self.cfg.batch_size, self.n_pairs
        start, need, parts = step * B, B, []
        while need:
            epoch, offset = divmod(start, n)
            take = min(need, n - offset)
            parts.append(self._epoch_order(epoch)[offset : offset + take])
            start, need = start + take, need - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _epoch_order(self, epoch: int) -> Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            self._perm_gen.manual_seed(_mix(self.cfg.seed, -1 - epoch))
            perm = torch.randperm(self.n_pairs, device=self.device, generator=self._perm_gen)
            self._perm_cache = (epoch, perm)
        return self._perm_cache[1]

    # --- validation -----------------------------------------------------------------------------------

    @torch.no_grad()
    def embed(self, pages: Tensor, chunk: int = 4096) -> Tensor:
        """(P, dims[-1]) float32 raw embeddings of pages (eval mode, eager model)."""
        was_training = self.model.training
        self.model.eval()
        out = []
        for lo in range(0, pages.shape[0], chunk):
            inputs = self.data.features.gather(pages[lo : lo + chunk], self.input_dtype)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out.append(self.model(inputs).float())
        self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.dims[-1], device=self.device)

    @torch.no_grad()
    def evaluate(self, eval_set: EvalSet | None = None, k: int = EVAL_K) -> dict[int, float]:
        """Recall@k per Matryoshka dim (exact) on ``eval_set``, by default the validation set."""
        val = eval_set if eval_set is not None else self.data.val
        if val is None:
            return {}
        emb = self.embed(val.pages)
        pool = self.targets(val.pool)
        return {
            d: recall_at_k(
                F.normalize(emb[:, :d], dim=1), F.normalize(pool[:, :d], dim=1), val.pair_row, val.pair_col, k
            )
            for d in self.dims
        }

    # --- the run --------------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[int], None] | None = None, out_dir: Path | None = None) -> FitResult:
        """Train ``cfg.steps`` steps, resuming from a checkpoint in ``work_dir`` when there is one.

        Logs go to ``work_dir`` (or ``out_dir`` without one): metrics.csv and tensorboard/, continued by a
        resumed run. ``on_step(done)`` is called after each completed step (progress hooks, tests).
        """
        cfg, B = self.cfg, self.cfg.batch_size
        t_start = time.perf_counter()
        ckpt = self.work_dir / CHECKPOINT if self.work_dir is not None else None
        state = _RunState()
        saved = None
        if ckpt is not None:
            saved = load_checkpoint(ckpt, self.checkpoint_key, self.net, self.opt, self.sched, self.device)
        if saved is not None:
            state = _RunState(**saved)
            if self.average is not None:
                if state.average is None:
                    raise ValueError(f"{ckpt}: the checkpoint has no weight average, the config asks for one")
                self.average.load(state.average)
                state.average = None  # the loaded copy is not kept: the trainer's average is the one
            log.event(f"[train] resumed from the checkpoint at step {state.step}", step=state.step)
        steps_log = StepLog(
            ["loss", *[f"loss_d{d}" for d in self.dims], *[f"temperature_d{d}" for d in self.dims], "grad_norm"],
            [f"val_recall@{EVAL_K}_d{d}" for d in self.dims],
            cfg.log_every,
            B,
            self.device,
            self.work_dir if self.work_dir is not None else out_dir,
            state.log_position if saved is not None else None,
        )
        bar = log.progress(total=cfg.steps * B, desc="train", unit="sample")
        bar.n = bar.last_print_n = state.step * B
        start, stop = state.step, False

        def flush(extra: dict[str, float] | None = None) -> None:
            last = steps_log.flush(extra)
            if last is not None:
                bar.set_postfix(loss=f"{last['loss']:.3f}", refresh=False)

        def validate() -> bool:
            t0 = time.perf_counter()
            recall, stop = self._validate(state)
            steps_log.exclude(time.perf_counter() - t0)  # evaluation time is not training time
            flush({f"val_recall@{EVAL_K}_d{d}": v for d, v in recall.items()})  # on this step's row
            return stop

        try:
            for step in range(start, cfg.steps):
                lr = float(self.sched.get_last_lr()[0])
                full = steps_log.add(step + 1, lr, self.train_step(step))
                state.step = done = step + 1
                bar.update(B)
                if self.data.val is not None and cfg.eval_every and done % cfg.eval_every == 0:
                    stop = validate()
                elif full:
                    flush()
                if ckpt is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                    flush()
                    t0 = time.perf_counter()
                    state.log_position = steps_log.position()
                    state.average = self.average.state() if self.average is not None else None
                    save_checkpoint(ckpt, self.checkpoint_key, self.net, self.opt, self.sched, self.device, vars(state))
                    state.average = None  # written; no second copy of the weights on the device between checkpoints
                    steps_log.exclude(time.perf_counter() - t0)
                if on_step is not None:
                    on_step(done)
                if stop:
                    break
            if self.data.val is not None and state.last_eval_step != state.step:
                validate()
            flush()
        finally:
            bar.close()
            steps_log.close()
        if state.best_state is not None:
            self.net.load_state_dict(state.best_state)
        elif self.average is not None:
            self.average.copy_to_module()
        return FitResult(
            steps=state.step,
            best_step=state.best_step,
            best_recall=state.best_recall,
            early_stopped=stop,
            resumed_from=start if saved is not None else 0,
            samples_per_s=(state.step - start) * B / max(steps_log.train_seconds, 1e-9),
            seconds=time.perf_counter() - t_start,
            history=state.history,
        )

    def _validate(self, state: _RunState) -> tuple[dict[int, float], bool]:
        """Evaluate, keep the best weights (the weight average's, with train.ema_decay); also True when early
        stopping says stop."""
        with self.average.applied() if self.average is not None else nullcontext():
            return self._validate_held(state)

    def _validate_held(self, state: _RunState) -> tuple[dict[int, float], bool]:
        recall = self.evaluate()
        state.last_eval_step = state.step
        state.history.append({"step": state.step, **{f"recall@{EVAL_K}_d{d}": v for d, v in recall.items()}})
        top = recall[self.dims[-1]]
        log.event(
            f"[train] step {state.step}: validation recall@{EVAL_K} "
            + " ".join(f"d{d}={v:.4f}" for d, v in recall.items()),
            step=state.step,
        )
        if state.best_state is None or top > state.best:
            state.best, state.best_step, state.best_recall, state.stale = top, state.step, recall, 0
            state.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
            return recall, False
        state.stale += 1
        return recall, bool(self.cfg.patience) and state.stale >= self.cfg.patience


@dataclass
class _RunState:
    """The loop's state that a checkpoint carries besides model, optimiser, schedule and RNG."""

    step: int = 0
    best: float = -1.0
    best_step: int = 0
    best_recall: dict[int, float] = field(default_factory=dict)
    best_state: dict[str, Tensor] | None = None
    stale: int = 0
    last_eval_step: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    log_position: dict[str, Any] = field(default_factory=dict)  # StepLog.position() at the checkpoint
    average: dict[str, Any] | None = None  # WeightAverage.state() at the checkpoint (train.ema_decay)


def _optimizer(
    model: LinkSageEncoder, cfg: TrainConfig, device: torch.device, rotation: LearnedRotation | None = None
) -> torch.optim.Optimizer:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        # weight decay on matrices only: not on biases, norms, embeddings or the temperatures
        (decay if p.ndim >= 2 and "emb" not in name else no_decay).append(p)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if rotation is not None:  # no decay (it would pull the rotation back to its PCA start), a tenth of the lr
        groups.append({"params": list(rotation.parameters()), "weight_decay": 0.0, "lr": cfg.lr * ROTATION_LR_SCALE})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=device.type == "cuda")


def _schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 10% of the peak at ``cfg.steps``."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(cfg.steps - cfg.warmup_steps, 1)
        t = min((step - cfg.warmup_steps) / span, 1.0)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * t))

    return factor


def _mix(seed: int, n: int) -> int:
    """A 63-bit generator seed from (seed, n): distinct streams for each step and epoch."""
    x = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    return x & ((1 << 63) - 1)
