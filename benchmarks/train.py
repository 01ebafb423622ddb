"""Training throughput: end-to-end samples/s next to the model's own forward/backward, in one process.

End to end = what ``linksage.train.loop.Trainer.train_step`` does each step: sample the batch's pairs
and random negatives, gather page and neighbour features from the device tables by index, look up the
candidates' targets, build the false-negative mask, forward, Matryoshka loss, backward, clip, AdamW.
Model only = forward + backward of the same encoder on one batch of inputs gathered beforehand (a
trivial loss, no optimiser). data_path_overhead = end-to-end time per step / model-only time - 1.

Feature tables are synthetic, generated on the device and sized like the Reddit benchmark (1M pages,
384-d MiniLM text, 1M pins). Presets: ``gpu`` (the default model: d=256, 4 layers, K=20, batch 4096,
bf16, torch.compile) and ``demo`` (the small CPU model of configs/demo.toml). ``--board-tokens 4`` adds
the board tokens the train stage gives a page when the data has boards (the Reddit benchmark's model);
the recorded H100 figure (docs/results.md) has none.

    python benchmarks/train.py --device cuda            # the GPU target (one H100/H200)
    python benchmarks/train.py --device cpu --preset demo

The last line printed is one JSON object with samples_per_s, model_only_samples_per_s,
data_path_overhead, device and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch

from _machine import machine
from linksage.config.train import TrainConfig
from linksage.model import EncoderConfig, LinkSageEncoder, PageInputs
from linksage.train.features import PageFeatures
from linksage.train.loop import TrainData, Trainer

PRESETS: dict[str, dict[str, object]] = {
    "gpu": dict(
        pages=1_000_000, pins=1_000_000, pairs=2_000_000, text_dim=384, image_dim=0, k=20, batch=4096,
        negatives=1024, d_model=256, layers=4, heads=8, dims="16,32,64,128,256", bf16=True, compile=True,
        steps=50, warmup=20, repeats=5,
    ),
    "demo": dict(
        pages=7_843, pins=19_608, pairs=16_600, text_dim=384, image_dim=0, k=10, batch=256,
        negatives=256, d_model=64, layers=2, heads=4, dims="8,16,32,64", bf16=False, compile=False,
        steps=20, warmup=5, repeats=5,
    ),
}  # fmt: skip


def synthetic_data(a: argparse.Namespace, device: torch.device) -> TrainData:
    """Random unit vectors and neighbour lists (about 10% missing slots) generated on the device."""
    g = torch.Generator(device=device).manual_seed(0)
    n, k, dims = a.pages, a.k, [int(d) for d in a.dims.split(",")]

    def unit(*shape: int) -> torch.Tensor:
        x = torch.randn(*shape, device=device, generator=g)
        return (x / x.norm(dim=-1, keepdim=True)).half()

    nbr = torch.randint(0, n, (n, k), device=device, generator=g, dtype=torch.int32)
    nbr[torch.rand(n, k, device=device, generator=g) < 0.1] = -1
    visits = torch.sort(torch.rand(n, k, device=device, generator=g) * 5, dim=1, descending=True).values
    image = unit(n, a.image_dim) if a.image_dim else torch.zeros(n, 0, device=device, dtype=torch.half)
    has_image = torch.rand(n, device=device, generator=g) < 0.7
    features = PageFeatures(
        text=unit(n, a.text_dim),
        image=image[:, None, :],
        image_mask=has_image[:, None],
        nbr_image=image,
        has_image=has_image,
        degree_bucket=torch.randint(0, 12, (n,), device=device, generator=g, dtype=torch.uint8),
        neighbours=nbr,
        log_visits=torch.where(nbr >= 0, visits, 0.0),
    )
    if a.board_tokens:
        boards = torch.randint(0, a.boards, (n, a.board_tokens), device=device, generator=g, dtype=torch.int32)
        boards[:, 1:][torch.rand(n, a.board_tokens - 1, device=device, generator=g) < 0.7] = -1  # most: 1 board
        features = dataclasses.replace(features, boards=boards, board_text=unit(a.boards, a.text_dim))
    return TrainData(
        features=features,
        targets=unit(a.pins, dims[-1]).float(),
        pair_page=torch.randint(0, n, (a.pairs,), device=device, generator=g),
        pair_pin=torch.randint(0, a.pins, (a.pairs,), device=device, generator=g),
    )


def make_trainer(a: argparse.Namespace, data: TrainData, device: torch.device) -> Trainer:
    dims = tuple(int(d) for d in a.dims.split(","))
    cfg = TrainConfig(
        dims=dims,
        d_model=a.d_model,
        layers=a.layers,
        heads=a.heads,
        neighbours=a.k,
        batch_size=a.batch,
        random_negatives=a.negatives,
        steps=10**9,
        warmup_steps=10,
        eval_every=0,
        checkpoint_every=0,
        ema_decay=a.ema_decay,
        prefix_distillation=a.prefix_distillation,
        device=str(device),
    )
    torch.manual_seed(0)
    f = data.features
    model = LinkSageEncoder(
        EncoderConfig(
            text_dim=f.text_dim,
            image_dim=f.image_dim,
            image_slots=f.image_slots,
            neighbours=a.k,
            output_dim=dims[-1],
            n_dims=len(dims),
            d_model=a.d_model,
            layers=a.layers,
            heads=a.heads,
            board_slots=f.board_slots,
            n_boards=f.n_boards,
        )
    ).to(device)
    return Trainer(cfg, data, model, device=device, bf16=a.bf16, compile=a.compile)


def timed(fn: Callable[[int], object], steps: int, device: torch.device, start: int) -> float:
    """Seconds per call of fn(step) over ``steps`` consecutive steps (synchronised)."""
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        fn(start + i)
    _sync(device)
    return (time.perf_counter() - t) / steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: gpu on CUDA, demo on CPU")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    for name in ("pages", "pins", "pairs", "text_dim", "image_dim", "k", "batch", "negatives", "d_model", "layers"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--board-tokens", type=int, default=0, help="board tokens per page (0 = none)")
    p.add_argument("--boards", type=int, default=2_361, help="boards in the synthetic tables (Reddit: 2,361)")
    p.add_argument("--dims", default=None, help="Matryoshka dims, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--ema-decay", type=float, default=0.0, help="train.ema_decay (0 = no weight average)")
    p.add_argument("--prefix-distillation", type=float, default=0.0, help="train.prefix_distillation (0 = off)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    preset = a.preset or ("gpu" if device.type == "cuda" else "demo")
    for key, value in PRESETS[preset].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.threads:
        torch.set_num_threads(a.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    data = synthetic_data(a, device)
    trainer = make_trainer(a, data, device)
    model = trainer.model
    inputs = data.features.gather(data.pair_page[: a.batch], trainer.input_dtype)  # ready tensors

    def model_loss(x: PageInputs) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
            emb = model(x)
        return emb.float().square().mean()  # a trivial loss: the model's own work only

    loss_fn = torch.compile(model_loss, dynamic=False) if a.compile else model_loss

    def model_fn(_: int) -> None:
        loss_fn(inputs).backward()
        model.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    timed(trainer.train_step, a.warmup, device, 0)  # compiles, warms caches and the allocator
    timed(model_fn, a.warmup, device, 0)
    warm_s = time.perf_counter() - t0
    e2e, alone = [], []
    step = a.warmup
    for _ in range(a.repeats):  # interleaved, so load changes on a shared machine hit both alike
        e2e.append(timed(trainer.train_step, a.steps, device, step))
        step += a.steps
        alone.append(timed(model_fn, a.steps, device, 0))
    t_e2e, t_model = statistics.median(e2e), statistics.median(alone)
    result = {
        "samples_per_s": round(a.batch / t_e2e, 1),
        "model_only_samples_per_s": round(a.batch / t_model, 1),
        "data_path_overhead": round(t_e2e / t_model - 1.0, 4),
        "device": device.type,
        "machine": machine(device),
        "preset": preset,
        "batch": a.batch,
        "random_negatives": a.negatives,
        "tokens": model.cfg.n_tokens,
        "board_tokens": a.board_tokens,
        "d_model": a.d_model,
        "layers": a.layers,
        "neighbours": a.k,
        "pages": a.pages,
        "bf16": a.bf16,
        "compile": a.compile,
        "ema_decay": a.ema_decay,
        "prefix_distillation": a.prefix_distillation,
        "threads": torch.get_num_threads(),
        "repeats": a.repeats,
        "steps_per_repeat": a.steps,
        "warmup_s": round(warm_s, 1),
        "torch": torch.__version__,
    }
    print(
        f"end to end {result['samples_per_s']:,.0f} samples/s, model alone {result['model_only_samples_per_s']:,.0f} "
        f"samples/s: the data path costs {100 * t_e2e / t_model - 100:.1f}% (medians of {a.repeats} x {a.steps} steps)"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
