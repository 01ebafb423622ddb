"""Load a trained model and embed pages; pins' vectors in the same space. The public API of other stages.

    model = load_model("runs/demo/train")
    emb = embed_pages("runs/demo/train", "runs/demo", np.arange(100))  # (100, 256) float32, unit rows
    pins = pin_vectors("runs/demo/train", "runs/demo")  # (n_pins, 256): cosine-comparable with emb

A d-dim embedding is the first d columns, re-normalised (``dim=d`` does that).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from linksage.config.store import COMPILE_MODES as EMBED_COMPILE_MODES
from linksage.errors import LinksageError
from linksage.model import EncoderConfig, LinkSageEncoder, PageInputs
from linksage.rundir import atomic_path
from linksage.train.features import PageFeatures, load_page_features
from linksage.train.target_space import to_target_space

MODEL_FILE = "model.pt"
FORMAT = "linksage-model/1"


@dataclass
class LinkSageModel:
    """A trained encoder plus what it needs to be used: its dims, target rotation and input options."""

    encoder: LinkSageEncoder
    dims: tuple[int, ...]
    rotation: np.ndarray  # (D_target, D_target) orthogonal; columns = axes of the trained space
    image_mode: str
    degree_buckets: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def output_dim(self) -> int:
        return self.dims[-1]

    @property
    def neighbours(self) -> int:
        return self.encoder.cfg.neighbours

    def check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.output_dim
        if dim not in self.dims:
            raise LinksageError(f"dim {dim} is not one of the model's Matryoshka dims {list(self.dims)}")
        return dim

    def pin_vectors(self, targets: np.ndarray, dim: int | None = None) -> np.ndarray:
        """Pins' target vectors (n, D_target) in the trained space at ``dim``: (n, dim) float32, unit rows."""
        return to_target_space(targets, self.rotation, self.check_dim(dim))

    def features(self, run_dir: Path | str, copy: bool = True) -> PageFeatures:
        """The page tables of a run directory, checked against what the encoder was trained on.

        ``copy=False`` leaves the large tables memory-mapped (see ``load_page_features``).
        """
        cfg = self.encoder.cfg
        feats = load_page_features(
            Path(run_dir),
            k=self.neighbours,
            image_mode=self.image_mode,
            degree_bucket_count=self.degree_buckets,
            board_slots=cfg.board_slots,
            board_means=cfg.board_mean_dim > 0,
            neighbour_means=cfg.nbr_mean_dim > 0,
            pin_means_before=cfg.pin_means_before,
            domains=cfg.n_domains > 0,
            copy=copy,
        )
        if feats.board_slots != cfg.board_slots:
            raise LinksageError(
                f"{run_dir}: the model takes {cfg.board_slots} board tokens per page, but the run has no board "
                "tables (content/board_text.npy, graph/pin__board.*); rerun its content and graph stages"
            )
        if feats.board_mean_dim != cfg.board_mean_dim:
            raise LinksageError(
                f"{run_dir}: the model's board tokens read {cfg.board_mean_dim}-dim board means, the run's pin "
                f"targets (content/pin_target.npy) give {feats.board_mean_dim}; embed with the run it was trained on"
            )
        if feats.nbr_mean_dim != cfg.nbr_mean_dim:
            raise LinksageError(
                f"{run_dir}: the model's neighbour tokens read {cfg.nbr_mean_dim}-dim neighbour means, the run's "
                f"pin targets give {feats.nbr_mean_dim}; embed with the run it was trained on"
            )
        got = (feats.text_dim, feats.image_dim, feats.image_slots if feats.image_dim else cfg.image_slots)
        want = (cfg.text_dim, cfg.image_dim, cfg.image_slots)
        if got != want:
            raise LinksageError(
                f"{run_dir}: page features (text dim, image dim, image slots) = {got}, but the model was trained "
                f"on {want}; embed with the content settings the model was trained with"
            )
        return feats

    def save(self, path: Path) -> None:
        blob = {
            "format": FORMAT,
            "encoder": self.encoder.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            "dims": list(self.dims),
            "rotation": torch.from_numpy(np.ascontiguousarray(self.rotation, dtype=np.float32)),
            "image_mode": self.image_mode,
            "degree_buckets": self.degree_buckets,
            "meta": {**self.meta, "torch": torch.__version__, "python": platform.python_version()},
        }
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)


def load_model(model_dir: Path | str, device: torch.device | str = "cpu") -> LinkSageModel:
    """A model saved by the train stage: the train folder (holding model.pt) or the file itself."""
    path = Path(model_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `linksage run train` first")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise LinksageError(f"{path} is not a {FORMAT} file")
    encoder = LinkSageEncoder(EncoderConfig(**blob["encoder"]))
    encoder.load_state_dict(blob["state_dict"])
    encoder.eval().to(device)
    return LinkSageModel(
        encoder=encoder,
        dims=tuple(blob["dims"]),
        rotation=blob["rotation"].numpy(),
        image_mode=blob["image_mode"],
        degree_buckets=blob["degree_buckets"],
        meta=blob.get("meta", {}),
    )


COMPILE_MODES = tuple(m for m in EMBED_COMPILE_MODES if m != "auto")  # "off" and torch.compile's modes


def _encode(encoder: LinkSageEncoder, inputs: PageInputs, dim: int, bf16: bool, device_type: str) -> Tensor:
    """(B, dim) float32 unit rows: the encoder's output prefix, re-normalised."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        emb = encoder(inputs)  # (B, output_dim)
    return F.normalize(emb.float()[:, :dim], dim=1)


_COMPILED: dict[str, Callable[..., Tensor]] = {}


def compiled_encode(mode: str) -> Callable[..., Tensor]:
    """``_encode`` under ``torch.compile`` (one per mode and process). The encoder is an argument, so a
    newly loaded model of the same shape reuses the compiled graph (its weights are inputs, not constants)."""
    if mode not in COMPILE_MODES or mode == "off":
        raise LinksageError(f"compile mode must be one of {list(COMPILE_MODES[1:])}, got {mode!r}")
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_encode, dynamic=False, mode=None if mode == "default" else mode)
    return _COMPILED[mode]


class PageEmbedder:
    """A model and a run directory's page tables on one device; embeds any pages, in batches.

    ``compile`` (a mode of ``COMPILE_MODES``, or True for "default") runs the encoder under
    ``torch.compile``; every batch is then padded to ``batch_size`` pages, so one graph serves all of them.
    On CUDA a call's output stays on the device until one copy into pinned host memory at its end: no
    host synchronisation per batch.
    """

    def __init__(
        self,
        model: LinkSageModel,
        features: PageFeatures,
        device: torch.device | str = "cpu",
        bf16: bool = False,
        compile: bool | str = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model
        self.model.encoder.eval().to(self.device)
        self.features = features.to(self.device)
        self.bf16 = bf16
        mode = ("default" if compile else "off") if isinstance(compile, bool) else compile
        self.compile_mode = mode
        self._encode = _encode if mode == "off" else compiled_encode(mode)

    @classmethod
    def from_run(
        cls, model_dir: Path | str, run_dir: Path | str, device: torch.device | str = "cpu", bf16: bool | None = None
    ) -> PageEmbedder:
        dev = torch.device(device)
        model = load_model(model_dir, dev)
        return cls(model, model.features(run_dir), dev, dev.type == "cuda" if bf16 is None else bf16)

    @torch.no_grad()
    def embed(self, page_indices: np.ndarray, dim: int | None = None, batch_size: int = 4096) -> np.ndarray:
        """(n, dim) float32, unit rows: the pages' embeddings at a Matryoshka dim (default the largest)."""
        d = self.model.check_dim(dim)
        idx = np.asarray(page_indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.features.n_pages):
            bad = idx[(idx < 0) | (idx >= self.features.n_pages)][0]
            raise LinksageError(f"page_idx {bad} is outside 0..{self.features.n_pages - 1}")
        n = len(idx)
        out = torch.empty((n, d), dtype=torch.float32, device=self.device)  # (n, d)
        if n == 0:
            return out.cpu().numpy()
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        pad = self.compile_mode != "off"
        all_pages = torch.from_numpy(idx).to(self.device)  # (n,): one copy per call
        for lo in range(0, n, batch_size):
            pages = all_pages[lo : lo + batch_size]
            m = len(pages)
            if pad and m < batch_size:  # the last batch: repeat its first page (outputs dropped)
                pages = torch.cat([pages, pages[:1].expand(batch_size - m)])
            emb = self._encode(self.model.encoder, self.features.gather(pages, dtype), d, self.bf16, self.device.type)
            out[lo : lo + m] = emb[:m]
        if self.device.type != "cuda":
            return out.numpy()
        host = torch.empty((n, d), dtype=torch.float32, pin_memory=True)
        host.copy_(out, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host.numpy()  # keeps ``host`` alive; its pinned block returns to torch's cache when freed


def embed_pages(
    model_dir: Path | str,
    run_dir: Path | str,
    page_indices: np.ndarray,
    device: torch.device | str = "cpu",
    dim: int | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """(n, dim) float32 unit-norm embeddings of ``page_indices`` from a run directory's features."""
    return PageEmbedder.from_run(model_dir, run_dir, device).embed(page_indices, dim, batch_size)


def pin_vectors(
    model_dir: Path | str, run_dir: Path | str, pin_indices: np.ndarray | None = None, dim: int | None = None
) -> np.ndarray:
    """(n, dim) float32 unit rows: pins' targets (content/pin_target.npy) in the model's space.

    A full-size page embedding and these vectors are directly comparable by cosine (dot product).
    """
    model = load_model(model_dir)
    targets = np.load(Path(run_dir) / "content" / "pin_target.npy", mmap_mode="r")
    if pin_indices is not None:
        targets = targets[np.asarray(pin_indices, dtype=np.int64)]
    return model.pin_vectors(targets, dim)
