"""Load a trained model and embed pages; pins' vectors in the same space. The public API of other stages.

    model = load_model("runs/demo/train")
    emb = embed_pages("runs/demo/train", "runs/demo", np.arange(100))  # (100, 256) float32, unit rows
    pins = pin_vectors("runs/demo/train", "runs/demo")  # (n_pins, 256): cosine-comparable with emb

A d-dim embedding is the first d columns, re-normalised (``dim=d`` does that).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from linksage.errors import LinksageError
from linksage.model import EncoderConfig, LinkSageEncoder
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

    def features(self, run_dir: Path | str) -> PageFeatures:
        """The page tables of a run directory, checked against what the encoder was trained on."""
        cfg = self.encoder.cfg
        feats = load_page_features(
            Path(run_dir),
            k=self.neighbours,
            image_mode=self.image_mode,
            degree_bucket_count=self.degree_buckets,
            board_slots=cfg.board_slots,
            domains=cfg.n_domains > 0,
        )
        if feats.board_slots != cfg.board_slots:
            raise LinksageError(
                f"{run_dir}: the model takes {cfg.board_slots} board tokens per page, but the run has no board "
                "tables (content/board_text.npy, graph/pin__board.*); rerun its content and graph stages"
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


class PageEmbedder:
    """A model and a run directory's page tables on one device; embeds any pages, in batches."""

    def __init__(
        self, model: LinkSageModel, features: PageFeatures, device: torch.device | str = "cpu", bf16: bool = False
    ) -> None:
        self.device = torch.device(device)
        self.model = model
        self.model.encoder.eval().to(self.device)
        self.features = features.to(self.device)
        self.bf16 = bf16

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
        out = np.empty((len(idx), d), dtype=np.float32)
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        for lo in range(0, len(idx), batch_size):
            pages = torch.from_numpy(idx[lo : lo + batch_size]).to(self.device)
            inputs = self.features.gather(pages, dtype)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                emb = self.model.encoder(inputs)
            out[lo : lo + len(pages)] = F.normalize(emb.float()[:, :d], dim=1).cpu().numpy()
        return out


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
