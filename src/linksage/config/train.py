"""Config of the train stage: the LinkSage transformer and its Matryoshka contrastive loss."""

from __future__ import annotations

import datetime
import itertools
import math
from dataclasses import dataclass
from typing import Literal

from linksage.config._load import ConfigError, added_later


@dataclass(frozen=True)
class TrainConfig:
    # The encoder. The output size is dims[-1]; each prefix in dims is trained (Matryoshka).
    dims: tuple[int, ...] = (16, 32, 64, 128, 256)
    dim_weights: tuple[float, ...] = ()  # one weight per dim; empty = all 1.0
    # > 0: each smaller prefix also learns the largest dim's softmax over the step's candidates (KL, the
    # largest dim held fixed), at this weight per prefix; added_later: 0.0 is the training before it came
    prefix_distillation: float = added_later(0.0)
    # > 0: the loss also scores each positive pin against the batch's pages (the pin-to-page direction of a
    # symmetric InfoNCE), at this weight relative to the page-to-pin one; added_later: 0.0 is the loss before it
    reverse_loss: float = added_later(0.0)
    d_model: int = 256
    layers: int = 4
    heads: int = 8
    mlp_ratio: int = 4
    dropout: float = 0.0
    # the probability, per training example, that the page's own text vector is zeroed (its token then reads
    # only its projection's bias, and the text skip path adds nothing), so that the model learns to read the
    # graph for pages whose text says little; validation, the test and inference always see the text.
    # added_later: runs made before the field existed (at 0.0) stay up to date
    content_dropout: float = added_later(0.0)
    neighbours: int = 20  # K: the first K walk neighbours (by visits desc); 0 = the content-only baseline
    image_tokens: Literal["each", "mean"] = "each"  # one token per image when the content stage kept them
    degree_buckets: int = 24  # self degree embedded by log2 bucket
    board_tokens: int = 4  # S: the page's boards (most of its pins first) as tokens; 0 = none
    board_ids: bool = True  # board tokens add a learned embedding per board to the board's text vector
    # board tokens also read the mean target of the board's pins, the page's own pins left out (only pins
    # created before split_date for a time split): what the board's pins are, in the targets' own space
    board_means: bool = False
    # neighbour tokens also read the mean target of the neighbour page's own pins (only pins created before
    # split_date for a time split; zeros for a neighbour that shares a pin with the page)
    neighbour_means: bool = False
    domain_token: bool = False  # a learned embedding of the page's domain (opt-in: -7.5% Recall@100 on Reddit)

    # The loss.
    batch_size: int = 1024
    random_negatives: int = 1024  # pins drawn uniformly from all pins each step, shared by the batch
    # hard negatives: for each positive, this many pins drawn uniformly from the positive's (first) board,
    # shared by the batch like the random ones; 0 = none
    board_negatives: int = 0
    # > 0: each board negative is one of the positive's neighbours in time in its board instead (one of
    # the board_negative_window pins created just before it or just after it): same topic, same period;
    # added_later: 0 is the draw over the whole board that came before it
    board_negative_window: int = added_later(0)
    # hard negatives mined by content: for each positive, this many pins drawn uniformly from the
    # content_negative_pool pins nearest its page's own text vector by cosine (the zero-shot ranking; the
    # page's own pins left out; for a time split only pins created before split_date), shared by the batch.
    # Needs page text and pin targets from one encoder. added_later: 0 is the training before it came
    content_negatives: int = added_later(0)
    content_negative_pool: int = added_later(100)
    logq_correction: bool = False  # subtract log sampling probability from negatives' logits
    temperature_init: float = 0.07
    temperature_min: float = 0.01  # the learned temperature is clamped to [temperature_min, 1]
    # "pca": the targets' principal axes (leading coordinates vary most); "learned": those axes turned further
    # by an orthogonal matrix trained with the encoder, so that each prefix keeps what retrieves best
    target_rotation: Literal["pca", "none", "learned"] = "pca"

    # Optimisation.
    steps: int = 2_000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0  # 0 = off
    # > 0: validation, the best-weights copy and the saved model use an exponential moving average of the
    # weights with this decay per step (train/ema.py); 0 = the live weights
    ema_decay: float = 0.0

    # Splits (by page): random, or by first_seen date (train before split_date, test on/after it).
    split: Literal["random", "time"] = "random"
    val_fraction: float = 0.05
    # time split only: "random" = a random val_fraction of the pages before split_date; "latest" = the
    # val_fraction first seen last before it (validation then looks forward in time, as the test does)
    val_split: Literal["random", "latest"] = "random"
    test_fraction: float = 0.1  # random split only
    split_date: str = ""  # ISO date, time split only
    split_end: str = ""  # ISO date, time split only: pages first seen on/after this are unused ("" = no bound)

    # Validation, early stopping, checkpoints and logging.
    eval_every: int = 200  # steps; 0 = only at the end
    eval_pages: int = 2_000  # validation pages scored (a fixed seeded sample)
    eval_pool: int = 100_000  # pins in the retrieval pool (random + the positives); 0 = all pins
    patience: int = 5  # evaluations without improvement of Recall@100 before stopping; 0 = never stop early
    checkpoint_every: int = 200  # steps; 0 = no checkpoints
    log_every: int = 50  # per-step metrics are buffered on the device and flushed every this many steps

    # Hardware.
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the model and loss (CUDA)
    threads: int = 0  # CPU threads for torch; 0 = leave torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        check_dims(self.dims)
        if self.dim_weights and len(self.dim_weights) != len(self.dims):
            raise ConfigError(
                f"train.dim_weights: needs one weight per dim in train.dims {list(self.dims)}, "
                f"got {list(self.dim_weights)}"
            )
        if any(w < 0 for w in self.dim_weights) or (self.dim_weights and sum(self.dim_weights) <= 0):
            raise ConfigError(f"train.dim_weights: must be >= 0 with a positive sum, got {list(self.dim_weights)}")
        for key in ("d_model", "layers", "heads", "mlp_ratio", "batch_size", "steps", "degree_buckets"):
            _positive(key, getattr(self, key))
        if self.d_model % self.heads:
            raise ConfigError(f"train.heads: must divide train.d_model={self.d_model}, got {self.heads}")
        for key in (
            "neighbours",
            "board_tokens",
            "random_negatives",
            "board_negatives",
            "board_negative_window",
            "content_negatives",
            "warmup_steps",
            "eval_every",
            "eval_pool",
            "patience",
        ):
            _non_negative(key, getattr(self, key))
        for key in ("checkpoint_every", "threads"):
            _non_negative(key, getattr(self, key))
        _positive("eval_pages", self.eval_pages)
        _positive("log_every", self.log_every)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout: must be in [0, 1), got {self.dropout}")
        for key in ("prefix_distillation", "reverse_loss"):  # loss weights
            if not 0.0 <= getattr(self, key) < math.inf:  # NaN fails too
                raise ConfigError(f"train.{key}: must be finite and >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.content_dropout < 1.0:
            raise ConfigError(f"train.content_dropout: must be in [0, 1), got {self.content_dropout}")
        if not 0.0 < self.temperature_min <= self.temperature_init <= 1.0:
            raise ConfigError(
                "train.temperature_init: must satisfy 0 < train.temperature_min <= temperature_init <= 1, "
                f"got temperature_min={self.temperature_min}, temperature_init={self.temperature_init}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay: must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr: must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(
                f"train.weight_decay and train.grad_clip: must be >= 0, got {self.weight_decay}, {self.grad_clip}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction: must be in (0, 1), got {self.val_fraction}")
        for hard in ("board_negatives", "content_negatives"):
            if self.logq_correction and getattr(self, hard):
                raise ConfigError(
                    "train.logq_correction: models in-batch and uniform random negatives only; "
                    f"set train.{hard} = 0 (got {getattr(self, hard)}) or logq_correction = false"
                )
        if self.content_negatives and self.content_negative_pool < 1:
            raise ConfigError(
                "train.content_negative_pool: must be >= 1 with train.content_negatives, "
                f"got {self.content_negative_pool}"
            )
        if self.board_negative_window and not self.board_negatives:
            raise ConfigError(
                "train.board_negative_window: narrows the board negatives; set train.board_negatives > 0 "
                f"(got {self.board_negatives}) or board_negative_window = 0"
            )
        if self.board_means and not self.board_tokens:
            raise ConfigError("train.board_means: reads the board tokens' boards; set train.board_tokens > 0")
        if self.neighbour_means and not self.neighbours:
            raise ConfigError("train.neighbour_means: reads the walk neighbours; set train.neighbours > 0")
        if self.val_split == "latest" and self.split != "time":
            raise ConfigError(
                f'train.val_split = "latest" needs train.split = "time" (pages ordered by first_seen), '
                f"got split = {self.split!r}"
            )
        if self.split == "random" and not (
            0.0 <= self.test_fraction < 1.0 and self.val_fraction + self.test_fraction < 1.0
        ):
            raise ConfigError(
                f"train.test_fraction: must be in [0, 1) with val_fraction + test_fraction < 1, "
                f"got test_fraction={self.test_fraction}, val_fraction={self.val_fraction}"
            )
        if self.split == "time":
            if not self.split_date:
                raise ConfigError('train.split_date: required when train.split = "time" (e.g. "2013-04-01")')
            start = parse_date("split_date", self.split_date)
            if self.split_end and parse_date("split_end", self.split_end) <= start:
                raise ConfigError(
                    f"train.split_end: must be after train.split_date={self.split_date!r}, got {self.split_end!r}"
                )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def output_dim(self) -> int:
        return self.dims[-1]

    @property
    def weights(self) -> tuple[float, ...]:
        return self.dim_weights or (1.0,) * len(self.dims)


def check_dims(dims: tuple[int, ...], output_dim: int | None = None, target_dim: int | None = None) -> None:
    """Matryoshka dims: positive, strictly increasing, the largest is the output size and fits the targets."""
    if not dims:
        raise ConfigError("train.dims: needs at least one dim, e.g. [16, 32, 64, 128, 256]")
    bad = [d for d in dims if d <= 0]
    if bad:
        raise ConfigError(f"train.dims: every dim must be positive, got {bad[0]} in {list(dims)}")
    for a, b in itertools.pairwise(dims):
        if b <= a:
            raise ConfigError(
                f"train.dims: must be strictly increasing (each a prefix of the next), got {b} after {a} "
                f"in {list(dims)}; sorted and deduplicated that is {sorted(set(dims))}"
            )
    if output_dim is not None and dims[-1] != output_dim:
        raise ConfigError(
            f"train.dims: the largest dim must equal the model's output size {output_dim}, got {dims[-1]} "
            f"in {list(dims)}"
        )
    if target_dim is not None and dims[-1] > target_dim:
        raise ConfigError(
            f"train.dims: the largest dim {dims[-1]} exceeds the pins' target embedding dim {target_dim}; "
            f"use dims up to {target_dim}, e.g. {[d for d in dims if d < target_dim] + [target_dim]}"
        )


def parse_date(key: str, text: str, section: str = "train") -> datetime.datetime:
    """An ISO date (or date-time) as an aware UTC datetime; ``section.key`` names it in the error."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{section}.{key}: expected an ISO date like 2013-04-01, got {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"train.{key}: must be positive, got {value}")


def _non_negative(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"train.{key}: must be >= 0, got {value}")
