"""The compiled and CUDA paths of inference: the same rows as eager CPU inference, within their precision.

``slow``: torch.compile (inductor) on the CPU, about a minute. ``gpu``: needs a CUDA device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from linksage.config.store import EmbedConfig
from linksage.embed.batch import embed_into_store
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train.features import upload
from linksage.train.infer import PageEmbedder, load_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def eager_cpu(run: Path, pages: np.ndarray) -> np.ndarray:
    return PageEmbedder.from_run(run / "train", run, "cpu").embed(pages)


@pytest.mark.slow
def test_compiled_cpu_rows_match_eager_and_a_reloaded_model_reuses_the_graph(image_run: Path) -> None:
    pages = np.arange(0, 300, 7)
    model = load_model(image_run / "train")
    compiled = PageEmbedder(model, model.features(image_run), compile="default")
    np.testing.assert_allclose(compiled.embed(pages, batch_size=16), eager_cpu(image_run, pages), atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    again = load_model(image_run / "train")  # a new module object with the same shapes
    PageEmbedder(again, again.features(image_run), compile="default").embed(pages, batch_size=16)
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("block_bytes", [1 << 26, 1000])  # one block; many, through both pinned buffers
def test_upload_copies_every_table_exactly(image_run: Path, block_bytes: int) -> None:
    feats = load_model(image_run / "train").features(image_run, copy=False)  # memory-mapped sources
    for name in ("text", "nbr_image", "has_image", "degree_bucket", "neighbours", "log_visits"):
        table = getattr(feats, name)
        assert torch.equal(upload(table, torch.device("cuda"), block_bytes).cpu(), table), name
    moved = feats.to("cuda")
    assert moved.image_is_nbr_image() and torch.equal(moved.image.cpu(), feats.image)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("compile_mode", ["off", "default"])
def test_cuda_rows_match_eager_cpu(image_run: Path, compile_mode: str) -> None:
    pages = np.arange(300)
    model = load_model(image_run / "train", "cuda")
    fp32 = PageEmbedder(model, model.features(image_run), "cuda", compile=compile_mode).embed(pages, batch_size=64)
    np.testing.assert_allclose(fp32, eager_cpu(image_run, pages), atol=1e-4)
    bf16 = PageEmbedder(model, model.features(image_run), "cuda", True, compile_mode).embed(pages, batch_size=64)
    np.testing.assert_allclose(bf16, eager_cpu(image_run, pages), atol=3e-2)


@pytest.mark.gpu
@cuda
def test_cuda_embed_stage_fills_the_store(image_run: Path, tmp_path: Path) -> None:
    cfg = EmbedConfig(device="cuda", chunk_rows=128, batch_size=64, compile="default")
    report = embed_into_store(image_run, tmp_path / "store", cfg)
    assert report.embedded == 300 and report.result.committed and report.compile_mode == "default"
    table = EmbeddingStore.open(tmp_path / "store").read(["url", "embedding"])
    assert table.num_rows == 300
    emb = embedding_matrix(table["embedding"], 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = embed_into_store(image_run, tmp_path / "store", cfg)
    assert again.embedded == 0 and not again.result.committed
